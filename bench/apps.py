"""The agent's real loop on the react-vite template, each figure beside its bare counterpart.

- createInstance: cold (nothing in Cloud Storage, new job processes), warm cache (the tree in
  Cloud Storage, new job processes with empty disks: every instance, as a create may land on any)
  and warm job (every instance's disk holding the tree), against `npm ci` of the same
  lockfile run bare here with an empty npm cache (as the sandbox's is: from the registry, the
  counterpart of the cold install) and with a warm npm cache (the bare counterpart of a cache hit);
- `npm run build` through executeCommands (the whole action, and the command in the sandbox)
  against the same build run bare in the same workspace;
- a session's save and restore after editing one file, bytes moved and time, against a save and
  a restore of the whole tree, dependencies included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.goals import goal, other
from bench.job_logs import session_root
from devstack.stack import PROJECT_ROOT, Stack
from functions.dependencies import DEPS_PREFIX
from functions.local_disk import DEPENDENCIES_FOLDER, LocalDisk
from functions.workspace import Workspace
from vibesdk_cli.progress import TERMINAL, wait_for_run
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage, storage_for

TEMPLATE = "react-vite"
TEMPLATE_DIR = PROJECT_ROOT / "templates" / TEMPLATE
CATALOG_ENTRY = json.loads((PROJECT_ROOT / "templates" / f"{TEMPLATE}.json").read_text())
BUILD = "npm run build --silent"
# Unmeasured creates at most before every job instance holds the tree (each lands on one at random).
WARM_UP_CREATES = 10
GOALS = {"warm_cache_create_s_max": 5.0, "warm_job_create_s_max": 1.0, "build_ratio_max": 1.1, "save_ratio_max": 0.05}


def _median(samples: list[float]) -> float:
    return round(statistics.median(samples), 3)


class _Api:
    def __init__(self, stack: Stack, token: str) -> None:
        self.client = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def wait(self, run_url: str, timeout: float = 600) -> dict[str, Any]:
        run = wait_for_run(lambda: self.client.get(run_url).json(), timeout, every=0.05)
        if run["status"] not in TERMINAL:
            raise TimeoutError(run_url)
        assert run["status"] == "succeeded", run
        return run

    def create(self) -> tuple[float, str, dict[str, Any]]:
        began = time.perf_counter()
        created = self.client.post("/api/agent", json={"templateName": TEMPLATE}).json()
        run = self.wait(created["runUrl"])
        return time.perf_counter() - began, str(created["sessionId"]), run["result"]["dependencies"]

    def act(self, session: str, action: str, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        began = time.perf_counter()
        queued = self.client.post(f"/api/agent/{session}/actions", json={"action": action, "params": params}).json()
        run = self.wait(queued["runUrl"])
        return time.perf_counter() - began, run


def _npm_ci(scratch: str, cache: str, offline: bool) -> float:
    for name in CATALOG_ENTRY["install"]["inputs"]:
        shutil.copy(TEMPLATE_DIR / name, scratch)
    env = dict(os.environ) | {"npm_config_cache": cache}
    if offline:
        env["npm_config_prefer_offline"] = "true"
    began = time.perf_counter()
    subprocess.run(CATALOG_ENTRY["install"]["command"], shell=True, cwd=scratch, env=env, check=True)
    return time.perf_counter() - began


def bare_npm_ci(repeats: int) -> dict[str, list[float]]:
    """`npm ci` of the template's lockfile, unsandboxed: with an npm cache as empty as the sandbox's (from
    the registry), and with a warm npm cache (the bare counterpart of a cache hit), alternated."""
    samples: dict[str, list[float]] = {"empty": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="vibesdk-bench-ci-cache-") as warm_cache:
        with tempfile.TemporaryDirectory(prefix="vibesdk-bench-ci-") as scratch:
            _npm_ci(scratch, warm_cache, offline=False)  # fills the warm cache, unmeasured
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="vibesdk-bench-ci-") as scratch:
                samples["empty"].append(_npm_ci(scratch, f"{scratch}/.npm-cache", offline=False))
            with tempfile.TemporaryDirectory(prefix="vibesdk-bench-ci-") as scratch:
                samples["warm"].append(_npm_ci(scratch, warm_cache, offline=True))
    return samples


def _new_job_processes(stack: Stack) -> None:
    """New job instances, every one (a create may land on any): each process restarted, each disk
    without the installed trees."""
    for index, unit in enumerate(stack.job_units):
        stack.supervisor.kill(unit, signal.SIGTERM)
        shutil.rmtree(stack.job_root(index) / DEPENDENCIES_FOLDER, ignore_errors=True)
        child = stack.supervisor.restart(unit)
        stack.supervisor.wait_for_port(child, "127.0.0.1", stack.ports.job_port(index))


def _holds_a_tree(root: Path) -> bool:
    folder = root / DEPENDENCIES_FOLDER
    return folder.is_dir() and any(folder.iterdir())


def _every_instance_warm(stack: Stack, api: _Api) -> int:
    """Unmeasured creates until every instance's disk holds the tree (the router picks the instance
    at random): a warm job is one that holds it, whichever instance the next create lands on."""
    for made in range(WARM_UP_CREATES + 1):
        if all(_holds_a_tree(stack.job_root(index)) for index in range(stack.job_count)):
            return made
        api.create()
    raise RuntimeError(f"{WARM_UP_CREATES} creates left a job instance without the tree")


def create_costs(stack: Stack, token: str, repeats: int) -> dict[str, Any]:
    api = _Api(stack, token)
    storage = storage_for(Settings.from_env(stack.env))
    storage.delete_prefix(WORKSPACES_BUCKET, DEPS_PREFIX)
    _new_job_processes(stack)
    cold, _, cold_deps = api.create()
    warm_cache, warm_cache_deps = [], []
    for _ in range(repeats):
        _new_job_processes(stack)
        seconds, _, deps = api.create()
        warm_cache.append(seconds)
        warm_cache_deps.append(deps)
    warm_up_creates = _every_instance_warm(stack, api)
    warm_jobs = [api.create() for _ in range(repeats)]
    warm_job = [seconds for seconds, _, _ in warm_jobs]
    bare = bare_npm_ci(repeats)
    bare_empty, bare_warm = _median(bare["empty"]), _median(bare["warm"])
    return {
        "repeats": repeats,
        "bare_npm_ci_s": bare_empty,
        "bare_npm_ci_samples_s": [round(x, 3) for x in bare["empty"]],
        "bare_npm_ci_warm_npm_cache_s": bare_warm,
        "bare_npm_ci_warm_npm_cache_samples_s": [round(x, 3) for x in bare["warm"]],
        "cold_s": round(cold, 3),
        "cold_source": cold_deps["source"],
        "cold_vs_bare": round(cold / bare_empty, 3),
        "warm_cache_s": _median(warm_cache),
        "warm_cache_samples_s": [round(x, 3) for x in warm_cache],
        "warm_cache_source": warm_cache_deps[0]["source"],
        "warm_cache_dependencies_s": _median([deps["seconds"] for deps in warm_cache_deps]),
        "cold_dependencies_s": cold_deps["seconds"],
        "warm_job_s": _median(warm_job),
        "warm_job_samples_s": [round(x, 3) for x in warm_job],
        "warm_job_source": warm_jobs[0][2]["source"],
        "warm_job_sources": sorted({deps["source"] for _, _, deps in warm_jobs}),
        "warm_job_warm_up_creates": warm_up_creates,
        "warm_cache_vs_bare": round(_median(warm_cache) / bare_empty, 3),
        "warm_job_vs_bare": round(_median(warm_job) / bare_empty, 3),
        "warm_cache_vs_bare_warm_npm_cache": round(_median(warm_cache) / bare_warm, 3),
        "warm_job_vs_bare_warm_npm_cache": round(_median(warm_job) / bare_warm, 3),
    }


def build_costs(stack: Stack, token: str, repeats: int) -> dict[str, Any]:
    """The build through executeCommands, and bare in the very workspace the job keeps."""
    api = _Api(stack, token)
    _, session, _ = api.create()
    through, in_sandbox = [], []
    for _ in range(repeats):
        seconds, run = api.act(session, "executeCommands", {"commands": [BUILD]})
        through.append(seconds)
        in_sandbox.append(run["result"]["results"][0]["durationMs"] / 1000)
    workspace = session_root(stack, session) / session / "files"
    bare = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run(BUILD, shell=True, cwd=workspace, check=True, capture_output=True)
        bare.append(time.perf_counter() - began)
    return {
        "repeats": repeats,
        "bare_s": _median(bare),
        "execute_commands_s": _median(through),
        "in_sandbox_s": _median(in_sandbox),
        "bare_samples_s": [round(x, 3) for x in bare],
        "execute_commands_samples_s": [round(x, 3) for x in through],
        "in_sandbox_samples_s": [round(x, 3) for x in in_sandbox],
        "ratio": round(_median(through) / _median(bare), 3),
        "in_sandbox_ratio": round(_median(in_sandbox) / _median(bare), 3),
        "mean_ratio": round(statistics.mean(through) / statistics.mean(bare), 3),
        "in_sandbox_mean_ratio": round(statistics.mean(in_sandbox) / statistics.mean(bare), 3),
    }


class _Counting(Storage):
    """The storage client, counting the bytes it moves."""

    def __init__(self, inner: Storage) -> None:
        self.__dict__.update(inner.__dict__)
        self.moved = 0

    def write(self, bucket: str, name: str, data: bytes, *args: Any, **kwargs: Any) -> int:
        self.moved += len(data)
        return super().write(bucket, name, data, *args, **kwargs)

    def read(self, bucket: str, name: str, generation: int | None = None) -> bytes:
        data = super().read(bucket, name, generation)
        self.moved += len(data)
        return data


def _timed_moved(storage: _Counting, call: Any) -> tuple[float, int]:
    storage.moved = 0
    began = time.perf_counter()
    call()
    return time.perf_counter() - began, storage.moved


def save_costs(stack: Stack, token: str) -> dict[str, Any]:
    """One edited file of a react-vite session, saved and restored, against the whole tree.

    The session is the one the job created (its tree given by links); the whole tree is the
    same files, dependencies included, saved and restored as a workspace's own.
    """
    api = _Api(stack, token)
    _, session, _ = api.create()
    root = session_root(stack, session)
    storage = _Counting(storage_for(Settings.from_env(stack.env)))
    edited = Workspace(storage, LocalDisk(root), session)
    edited.restore()
    app = edited.path / "src" / "App.tsx"
    app.write_text(app.read_text().replace("clicked", "pressed"))
    one_save, one_save_bytes = _timed_moved(storage, edited.save)
    elsewhere = Path(tempfile.mkdtemp(prefix="vibesdk-bench-restore-"))
    try:
        # Restored on another instance that holds the tree: only the session's own files move.
        disk = LocalDisk(elsewhere)
        again = Workspace(storage, disk, session)
        shutil.copytree(root / session / "files", again.path, symlinks=True)
        base = (root / session / "base.json").read_text()
        (elsewhere / session / "base.json").write_text(base)
        # That instance's own disk holds the tree (a workspace finds its tree by key on its own disk).
        key = json.loads(base)["key"]
        shutil.copytree(LocalDisk(root).tree_home(key).path, disk.tree_home(key).path, symlinks=True)
        app_again = again.path / "src" / "App.tsx"
        app_again.write_text("stale")
        one_restore, one_restore_bytes = _timed_moved(storage, again.restore)

        whole = Workspace(storage, LocalDisk(elsewhere), f"{session}-whole")
        whole.start_empty()
        shutil.copytree(edited.path, whole.path, dirs_exist_ok=True)
        full_save, full_save_bytes = _timed_moved(storage, whole.save)
        fresh = Workspace(
            storage, LocalDisk(Path(tempfile.mkdtemp(prefix="vibesdk-bench-restore-"))), f"{session}-whole"
        )
        full_restore, full_restore_bytes = _timed_moved(storage, fresh.restore)
        whole.destroy()
        shutil.rmtree(fresh.path.parent.parent, ignore_errors=True)
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
    return {
        "files_in_tree": sum(1 for p in edited.path.rglob("*") if p.is_file()),
        "one_file_save_s": round(one_save, 4),
        "one_file_save_bytes": one_save_bytes,
        "one_file_restore_s": round(one_restore, 4),
        "one_file_restore_bytes": one_restore_bytes,
        "full_save_s": round(full_save, 3),
        "full_save_bytes": full_save_bytes,
        "full_restore_s": round(full_restore, 3),
        "full_restore_bytes": full_restore_bytes,
        "save_time_ratio": round(one_save / full_save, 4),
        "save_bytes_ratio": round(one_save_bytes / full_save_bytes, 5),
        "restore_time_ratio": round(one_restore / full_restore, 4),
        "restore_bytes_ratio": round(one_restore_bytes / full_restore_bytes, 5),
    }


def app_costs(stack: Stack, token: str, repeats: int) -> dict[str, Any]:
    results = {
        "create": create_costs(stack, token, repeats),
        "build": build_costs(stack, token, repeats),
        "save": save_costs(stack, token),
    }
    create, build, save = results["create"], results["build"], results["save"]
    of = f"median of {repeats}"
    results["goals"] = [
        goal(
            f"react-vite createInstance, warm cache, new job process <= {GOALS['warm_cache_create_s_max']:g} s",
            of,
            create["warm_cache_s"],
            GOALS["warm_cache_create_s_max"],
            others=[
                other(f"slowest of {repeats}", max(create["warm_cache_samples_s"]), GOALS["warm_cache_create_s_max"])
            ],
        ),
        goal(
            f"react-vite createInstance, warm job <= {GOALS['warm_job_create_s_max']:g} s",
            of,
            create["warm_job_s"],
            GOALS["warm_job_create_s_max"],
            others=[other(f"slowest of {repeats}", max(create["warm_job_samples_s"]), GOALS["warm_job_create_s_max"])],
        ),
        goal(
            f"npm run build through executeCommands <= {GOALS['build_ratio_max']:g} x bare (the whole action)",
            f"{of} against {of} bare",
            build["ratio"],
            GOALS["build_ratio_max"],
            others=[other("mean against mean", build["mean_ratio"], GOALS["build_ratio_max"])],
        ),
        goal(
            f"npm run build through executeCommands <= {GOALS['build_ratio_max']:g} x bare (the command in the sandbox)",
            f"{of} against {of} bare",
            build["in_sandbox_ratio"],
            GOALS["build_ratio_max"],
            others=[other("mean against mean", build["in_sandbox_mean_ratio"], GOALS["build_ratio_max"])],
        ),
        goal(
            f"react-vite one-file save and restore <= {GOALS['save_ratio_max']:.0%} of the whole tree's (time and bytes)",
            "one save and one restore each; the largest of the four ratios",
            max(
                save["save_time_ratio"],
                save["save_bytes_ratio"],
                save["restore_time_ratio"],
                save["restore_bytes_ratio"],
            ),
            GOALS["save_ratio_max"],
        ),
    ]
    return results
