"""Sandbox and workspace costs, each against its own baseline measured in the same run."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from functions import sandbox
from functions.local_disk import LocalDisk
from functions.workspace import MAX_DELTAS, Workspace
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


# Cloud Run's `sandbox` command is measured through the tests' stand-in (its flags on bubblewrap).
CLOUD_RUN_STANDIN = Path(__file__).resolve().parent.parent / "tests" / "standins" / "sandbox"


@functools.cache
def _runnable_standin() -> str:
    """The stand-in copied where the sandbox's uid may run it: a clone may sit in a private folder."""
    folder = Path(tempfile.mkdtemp(prefix="vibesdk-bench-standin-"))
    folder.chmod(0o755)
    atexit.register(shutil.rmtree, folder, True)
    copy = folder / "sandbox"
    shutil.copyfile(CLOUD_RUN_STANDIN, copy)
    copy.chmod(0o755)
    return str(copy)


def use_backend(name: str) -> sandbox.Sandbox:
    """Commands as a job process with this backend runs them (its isolation probed on first use)."""
    os.environ["VIBESDK_SANDBOX_BACKEND"] = name
    os.environ.setdefault("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND", _runnable_standin())
    return sandbox.Sandbox(Settings.from_env())


def sandbox_overhead(repeats: int, backend: str) -> dict[str, Any]:
    """`true` through one isolation backend against a bare /bin/sh subprocess."""
    chosen = use_backend(backend)
    root = Path(tempfile.mkdtemp(prefix="vibesdk-bench-"))
    root.chmod(0o711)
    workspace = root / "ws"
    workspace.mkdir()
    chosen.prepare(workspace)
    bare, isolated = [], []
    try:
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run(["/bin/sh", "-c", "true"], cwd=workspace, check=True)
            bare.append(time.perf_counter() - began)
            began = time.perf_counter()
            result = chosen.run("true", workspace, 10)
            isolated.append(time.perf_counter() - began)
            assert result.exit_code == 0, result
    finally:
        shutil.rmtree(root)
    return {
        "isolation": backend if backend != "cloud-run" else "cloud-run (stand-in on bubblewrap)",
        "repeats": repeats,
        "bare_ms": _median_ms(bare),
        "sandboxed_ms": _median_ms(isolated),
        "overhead_ms": round(_median_ms(isolated) - _median_ms(bare), 2),
        "mean_overhead_ms": round((statistics.mean(isolated) - statistics.mean(bare)) * 1000, 2),
        "p95_overhead_ms": round((_p95(isolated) - _p95(bare)) * 1000, 2),
    }


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


NPM_INSTALL = "npm install --no-audit --no-fund --silent is-number@7.0.0"


def egress_cost(repeats: int) -> dict[str, Any]:
    """One small `npm install` from the registry: bare on this machine, and sandboxed through the egress proxy.

    Both with an empty npm cache of their own each time, so both fetch from the registry.
    """
    chosen = use_backend("bubblewrap")
    bare, proxied = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="vibesdk-bench-npm-") as scratch:
            env = dict(os.environ) | {"npm_config_cache": f"{scratch}/cache"}
            began = time.perf_counter()
            subprocess.run(NPM_INSTALL, shell=True, cwd=scratch, env=env, check=True)
            bare.append(time.perf_counter() - began)
        root = Path(tempfile.mkdtemp(prefix="vibesdk-bench-"))
        root.chmod(0o711)
        try:
            chosen.prepare(root)
            began = time.perf_counter()
            run = sandbox.Egress("bench", "bench", "bench")
            result = chosen.run(NPM_INSTALL, root, 120, egress_for=run)
            proxied.append(time.perf_counter() - began)
            assert result.exit_code == 0, result.stderr[-2000:]
        finally:
            shutil.rmtree(root)
    return {
        "command": NPM_INSTALL,
        "repeats": repeats,
        "bare_ms": _median_ms(bare),
        "sandboxed_with_proxy_ms": _median_ms(proxied),
        "added_ms": round(_median_ms(proxied) - _median_ms(bare), 2),
    }


def _fill(path: Path, files: int, total_bytes: int) -> None:
    size = max(1, total_bytes // files)
    for index in range(files):
        target = path / f"d{index % 50}" / f"f{index}.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(os.urandom(size))


def _timed(call: Any) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def workspace_costs(storage: Storage, cases: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Full save, restore onto an empty disk, and restore when already current, per size."""
    rows = []
    root = Path(tempfile.mkdtemp(prefix="vibesdk-bench-ws-"))
    try:
        for files, total in cases:
            session = f"bench-{files}-{total}-{time.time_ns()}"
            origin = Workspace(storage, LocalDisk(root / "origin"), session)
            origin.start_empty()
            _fill(origin.path, files, total)
            save = _timed(origin.save)
            fresh = Workspace(storage, LocalDisk(root / "fresh"), session)
            restore = _timed(fresh.restore)
            current = _timed(fresh.restore)
            rows.append(
                {
                    "files": files,
                    "bytes": total,
                    "save_s": round(save, 3),
                    "restore_s": round(restore, 3),
                    "restore_current_s": round(current, 4),
                }
            )
            origin.destroy()
    finally:
        shutil.rmtree(root)
    return rows


def incremental_save(
    storage: Storage, files: int = 1000, total: int = 1 << 20, saves: int = 32, full_saves: int = 3
) -> dict[str, Any]:
    """Saving one changed file of a 1,000-file workspace against saving it whole (medians).

    `saves` one-file saves in a row include the base rewrite every MAX_DELTAS-th one: the mean
    shows that amortized cost, the median the typical save.
    """
    root = Path(tempfile.mkdtemp(prefix="vibesdk-bench-inc-"))
    full, one = [], []
    try:
        for attempt in range(full_saves):
            workspace = Workspace(storage, LocalDisk(root), f"bench-inc-{attempt}-{time.time_ns()}")
            workspace.start_empty()
            _fill(workspace.path, files, total)
            full.append(_timed(workspace.save))
            if attempt < full_saves - 1:
                workspace.destroy()
        for index in range(saves):
            (workspace.path / f"d{index % 50}" / f"f{index}.bin").write_bytes(os.urandom(total // files))
            one.append(_timed(workspace.save))
        workspace.destroy()
    finally:
        shutil.rmtree(root)
    return {
        "files": files,
        "saves": saves,
        "full_saves": full_saves,
        "base_rewrite_every": MAX_DELTAS,
        "full_save_s": round(statistics.median(full), 4),
        "one_file_save_s": round(statistics.median(one), 4),
        "one_file_save_mean_s": round(statistics.mean(one), 4),
        "ratio": round(statistics.median(one) / statistics.median(full), 4),
        "mean_ratio": round(statistics.mean(one) / statistics.median(full), 4),
    }
