"""A session's files: a local working copy, kept in Cloud Storage between actions.

Cloud Storage holds `sessions/{session}/manifest.json` (path -> sha256, size, mode) and
one content-addressed object per distinct file, `sessions/{session}/blobs/{sha256}`.
Saving uploads only blobs the manifest lacks, then replaces the manifest on
the generation it was restored from: a racing writer's save fails with
Conflict instead of silently losing the other's update, and a half-done save
leaves the previous manifest, and so the previous workspace, intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibesdk_gcp.errors import NotFound
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.storage import Storage

MANIFEST = "manifest.json"
TRANSFER_THREADS = 16


@dataclass(frozen=True)
class SaveReport:
    uploaded: int
    unchanged: int
    removed: int
    generation: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Workspace:
    def __init__(self, storage: Storage, root: Path, session_id: str) -> None:
        self._storage = storage
        # Traversable, not listable: the sandbox uid reaches its own workspace and sees no others.
        root.mkdir(mode=0o711, parents=True, exist_ok=True)
        self._prefix = f"sessions/{session_id}/"
        self._home = root / session_id
        self.path = self._home / "files"
        self._state_file = self._home / "state.json"
        # What the working copy holds: manifest generation and, per file, its entry and stat.
        self._generation = 0
        self._files: dict[str, dict[str, Any]] = {}

    def exists(self) -> bool:
        try:
            self._storage.stat(WORKSPACES_BUCKET, self._prefix + MANIFEST)
        except NotFound:
            return False
        return True

    def start_empty(self) -> None:
        """A new workspace: nothing stored yet; the first save must create the manifest."""
        shutil.rmtree(self._home, ignore_errors=True)
        self._home.mkdir(mode=0o711)
        self.path.mkdir()
        self._generation, self._files = 0, {}

    def restore(self) -> None:
        """Bring the working copy to the stored manifest, downloading only what differs."""
        info = self._storage.stat(WORKSPACES_BUCKET, self._prefix + MANIFEST)
        self._load_state()
        if info.generation == self._generation:
            wanted = {rel: _manifest_entry(entry) for rel, entry in self._files.items()}
        else:
            raw = self._storage.read(WORKSPACES_BUCKET, self._prefix + MANIFEST, info.generation)
            wanted = json.loads(raw)["files"]
        self._home.mkdir(mode=0o711, exist_ok=True)
        self.path.mkdir(exist_ok=True)
        local = self._scan()
        for rel in set(local) - set(wanted):
            (self.path / rel).unlink()
        missing = [rel for rel, entry in wanted.items() if local.get(rel, {}).get("sha256") != entry["sha256"]]
        _in_parallel(
            lambda rel: self._storage.download(
                WORKSPACES_BUCKET, self._prefix + "blobs/" + wanted[rel]["sha256"], self.path / rel
            ),
            missing,
        )
        for rel, entry in wanted.items():
            os.chmod(self.path / rel, entry["mode"])
        self._remove_empty_dirs()
        self._generation = info.generation
        self._files = self._scan()
        self._write_state()

    def save(self) -> SaveReport:
        current = self._scan()
        stored = {entry["sha256"] for entry in self._files.values()}
        new_blobs = {entry["sha256"]: rel for rel, entry in current.items() if entry["sha256"] not in stored}
        _in_parallel(
            lambda digest: self._storage.write(
                WORKSPACES_BUCKET, self._prefix + "blobs/" + digest, (self.path / new_blobs[digest]).read_bytes()
            ),
            list(new_blobs),
        )
        uploaded = len(new_blobs)
        removed = len(set(self._files) - set(current))
        files = {rel: _manifest_entry(entry) for rel, entry in current.items()}
        if self._generation == 0 or files != {rel: _manifest_entry(e) for rel, e in self._files.items()}:
            manifest = {"version": 1, "files": files}
            self._generation = self._storage.write(
                WORKSPACES_BUCKET, self._prefix + MANIFEST, json.dumps(manifest).encode(),
                "application/json", if_generation_match=self._generation,
            )
        self._files = current
        self._write_state()
        return SaveReport(uploaded, len(current) - uploaded, removed, self._generation)

    def destroy(self) -> None:
        self._storage.delete_prefix(WORKSPACES_BUCKET, self._prefix)
        shutil.rmtree(self._home, ignore_errors=True)

    def _scan(self) -> dict[str, dict[str, Any]]:
        """Every regular file, hashed only when its size or mtime moved since last seen."""
        found: dict[str, dict[str, Any]] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in filenames:
                full = Path(dirpath) / name
                stat = full.lstat()
                if not full.is_file() or full.is_symlink():
                    continue  # links and devices are not part of a workspace
                rel = full.relative_to(self.path).as_posix()
                known = self._files.get(rel)
                if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
                    digest = known["sha256"]
                else:
                    digest = _sha256(full)
                mode = 0o755 if stat.st_mode & 0o100 else 0o644
                found[rel] = {"sha256": digest, "size": stat.st_size, "mode": mode, "mtime_ns": stat.st_mtime_ns}
        return found

    def _remove_empty_dirs(self) -> None:
        for dirpath, dirnames, filenames in os.walk(self.path, topdown=False):
            if not dirnames and not filenames and Path(dirpath) != self.path:
                os.rmdir(dirpath)

    def _load_state(self) -> None:
        try:
            state = json.loads(self._state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            self._generation, self._files = 0, {}
            return
        self._generation, self._files = int(state["generation"]), state["files"]

    def _write_state(self) -> None:
        self._state_file.write_text(json.dumps({"generation": self._generation, "files": self._files}))


def _in_parallel(transfer: Callable[[str], object], items: list[str]) -> None:
    """Object transfers are latency-bound: run them side by side."""
    if len(items) <= 1:
        for item in items:
            transfer(item)
        return
    with ThreadPoolExecutor(max_workers=min(TRANSFER_THREADS, len(items))) as pool:
        for _ in pool.map(transfer, items):
            pass


def _manifest_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": entry["sha256"], "size": entry["size"], "mode": entry["mode"]}
