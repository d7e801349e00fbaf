"""A session's files: a local working copy, kept in Cloud Storage between actions.

Cloud Storage holds, under `sessions/{session}/`, `manifest.json` (path -> sha256, size,
mode, and which pack holds each content) and packs: zip files of contents named by their
sha256. A save uploads the contents the manifest lacks as one new pack, then replaces the
manifest on the generation it was restored from: a racing writer's save fails with Conflict
instead of silently losing the other's update, and a half-done save leaves the previous
manifest, and so the previous workspace, intact. One object per save, not per file, keeps a
10,000-file workspace to a handful of requests.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vibesdk_gcp.errors import NotFound
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.storage import Storage

MANIFEST = "manifest.json"
# Past this many packs a save rewrites every live content into one, dropping the rest.
MAX_PACKS = 32


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
        # What the working copy holds: manifest generation, its files (with stat) and packs.
        self._generation = 0
        self._files: dict[str, dict[str, Any]] = {}
        self._packs: dict[str, str] = {}  # sha256 -> pack id

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
        self._generation, self._files, self._packs = 0, {}, {}

    def restore(self) -> None:
        """Bring the working copy to the stored manifest, fetching only the packs of what differs."""
        info = self._storage.stat(WORKSPACES_BUCKET, self._prefix + MANIFEST)
        self._load_state()
        if info.generation == self._generation:
            wanted, packs = {rel: _entry(e) for rel, e in self._files.items()}, self._packs
        else:
            manifest = json.loads(self._storage.read(WORKSPACES_BUCKET, self._prefix + MANIFEST, info.generation))
            wanted, packs = manifest["files"], manifest["packs"]
        self._home.mkdir(mode=0o711, exist_ok=True)
        self.path.mkdir(exist_ok=True)
        local = self._scan()
        for rel in set(local) - set(wanted):
            (self.path / rel).unlink()
        missing = [rel for rel, entry in wanted.items() if local.get(rel, {}).get("sha256") != entry["sha256"]]
        by_pack: dict[str, list[str]] = {}
        for rel in missing:
            by_pack.setdefault(packs[wanted[rel]["sha256"]], []).append(rel)
        for pack, paths in by_pack.items():
            with zipfile.ZipFile(io.BytesIO(self._storage.read(WORKSPACES_BUCKET, self._pack_object(pack)))) as archive:
                for rel in paths:
                    target = self.path / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.unlink(missing_ok=True)
                    target.write_bytes(archive.read(wanted[rel]["sha256"]))
        for rel, entry in wanted.items():
            os.chmod(self.path / rel, entry["mode"])
        self._remove_empty_dirs()
        self._generation, self._packs = info.generation, dict(packs)
        self._files = self._scan()
        self._write_state()

    def save(self) -> SaveReport:
        current = self._scan()
        files = {rel: _entry(entry) for rel, entry in current.items()}
        live = {entry["sha256"] for entry in files.values()}
        packs = {digest: pack for digest, pack in self._packs.items() if digest in live}
        new = {entry["sha256"]: rel for rel, entry in current.items() if entry["sha256"] not in packs}
        if len(set(packs.values())) >= MAX_PACKS:
            new, packs = {entry["sha256"]: rel for rel, entry in current.items()}, {}
        if new:
            pack = uuid.uuid4().hex
            self._storage.write(WORKSPACES_BUCKET, self._pack_object(pack), self._pack(new), "application/zip")
            packs |= dict.fromkeys(new, pack)
        removed = len(set(self._files) - set(current))
        if self._generation == 0 or files != {rel: _entry(e) for rel, e in self._files.items()} or new:
            manifest = {"version": 2, "files": files, "packs": packs}
            self._generation = self._storage.write(
                WORKSPACES_BUCKET,
                self._prefix + MANIFEST,
                json.dumps(manifest).encode(),
                "application/json",
                if_generation_match=self._generation,
            )
            for dropped in set(self._packs.values()) - set(packs.values()):
                self._storage.delete(WORKSPACES_BUCKET, self._pack_object(dropped))
        self._files, self._packs = current, packs
        self._write_state()
        return SaveReport(len(new), len(current) - len(new), removed, self._generation)

    def destroy(self) -> None:
        self._storage.delete_prefix(WORKSPACES_BUCKET, self._prefix)
        shutil.rmtree(self._home, ignore_errors=True)

    def _pack_object(self, pack: str) -> str:
        return f"{self._prefix}packs/{pack}.zip"

    def _pack(self, contents: dict[str, str]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for digest, rel in contents.items():
                archive.write(self.path / rel, digest)
        return buffer.getvalue()

    def _scan(self) -> dict[str, dict[str, Any]]:
        """Every regular file, hashed only when its size or mtime moved since last seen."""
        found: dict[str, dict[str, Any]] = {}
        for dirpath, _dirnames, filenames in os.walk(self.path):
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
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            self._generation, self._files, self._packs = 0, {}, {}
            return
        self._generation, self._files, self._packs = int(state["generation"]), state["files"], state.get("packs", {})

    def _write_state(self) -> None:
        state = {"generation": self._generation, "files": self._files, "packs": self._packs}
        self._state_file.write_text(json.dumps(state))


def _entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": entry["sha256"], "size": entry["size"], "mode": entry["mode"]}
