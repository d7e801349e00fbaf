"""A session's files: a local working copy, kept in Cloud Storage between actions.

Cloud Storage holds, under `sessions/{session}/`:
- `manifest.json`, the base: path -> sha256, size, mode, and the object holding each content;
- `manifest.json.delta/{base generation}/{n}.zip`, one per save since that base: the contents
  the save added and `changes.json` (path -> entry, or null for a removed file);
- `packs/{id}.zip`: every content at once, written by a first save or a repack.

A save writes one delta, created only if its name is still free: two writers that restored the
same state race for the same name, and the loser gets Conflict instead of silently losing the
other's update; a save that dies half-way leaves no delta, so the previous workspace. The
MAX_DELTAS-th delta seals its chain: the base is then rewritten from the chain (conditional on
the base's generation), by the writer that sealed it or, if that one died first, by the next
restore. A restore lists the manifest and its deltas in one request and fetches only what the
working copy lacks; one object per save keeps a one-file save to one request whatever the size
of the workspace, and a 10,000-file workspace to a handful.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from stat import S_ISREG
from typing import Any, TypedDict

from functions import confined
from functions.dependencies import file_sha256, tree_index
from functions.local_disk import LocalDisk
from vibesdk_gcp.errors import ActionFailed, Conflict, NotFound
from vibesdk_gcp.names import WORKSPACES_BUCKET
from vibesdk_gcp.storage import Storage

logger = logging.getLogger("functions.workspace")

MANIFEST = "manifest.json"
DELTAS = f"{MANIFEST}.delta"
CHANGES = "changes.json"
# Saves between two rewrites of the base: a restore from scratch reads at most this many deltas.
MAX_DELTAS = 16
# Past this many content objects a base rewrite repacks every live content into one.
MAX_PACKS = 32
RESTORE_ATTEMPTS = 3
# Deeper paths cannot be opened by name (PATH_MAX is 4096 with the workspace's own path): not kept.
MAX_PATH_CHARS = 3000

Entry = dict[str, Any]


class Base(TypedDict):
    """The installed tree given to a working copy (functions/actions/common.py)."""

    key: str
    folder: str
    tree: str
    stamp: int | None  # which making of the tree (DependencyCache.stamp)


@dataclass(frozen=True)
class SaveReport:
    uploaded: int
    unchanged: int
    removed: int
    generation: int
    # Whether any file changed (a content already stored elsewhere in the workspace uploads nothing).
    changed: bool = True


def _delta_name(base: int, number: int) -> str:
    return f"{DELTAS}/{base}/{number:06d}.zip"


class Workspace:
    def __init__(self, storage: Storage, disk: LocalDisk, session_id: str) -> None:
        self._storage = storage
        self._session_id = session_id
        self._prefix = f"sessions/{session_id}/"
        self._disk = disk
        home = disk.home(session_id)
        self._home = home.path
        self.path = home.files
        self._state_file = home.state
        self._states = disk.states
        # The installed tree the working copy was given (functions/dependencies.py): its files,
        # unchanged, are neither saved nor removed by a restore.
        self._base_file = home.base
        # What the working copy holds: the base generation, how many of its deltas, its files
        # (with stat) and which object holds each content (sha256 -> name under the prefix).
        self._generation = 0
        self._applied = 0
        self._read_bytes = 0  # by the current restore
        self._files: dict[str, Entry] = {}
        self._packs: dict[str, str] = {}
        # What giving it its dependencies did in this action (functions/actions/common.py).
        self.installed: dict[str, Any] | None = None

    def base(self) -> Base | None:
        """The installed tree given to this working copy: key, folder and tree path; None if none."""
        try:
            base = json.loads(self._base_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return base if self._disk.tree_home(base["key"]).tree.is_dir() else None

    def set_base(self, base: Base | None) -> None:
        if base is None:
            self._base_file.unlink(missing_ok=True)
        else:
            self._base_file.write_text(json.dumps(base))

    def exists(self) -> bool:
        try:
            self._storage.stat(WORKSPACES_BUCKET, self._prefix + MANIFEST)
        except NotFound:
            return False
        return True

    def start_empty(self) -> None:
        """A new workspace: nothing stored yet; the first save must create the manifest."""
        shutil.rmtree(self._home, ignore_errors=True)
        self._home.mkdir()
        self._home.chmod(0o711)
        self.path.mkdir()
        self._generation, self._applied, self._files, self._packs = 0, 0, {}, {}
        self._states.pop(self._state_file, None)

    def restore(self) -> None:
        """Bring the working copy to the stored state, fetching only the contents that differ."""
        started, self._read_bytes = time.monotonic(), 0
        for attempt in range(RESTORE_ATTEMPTS):
            try:
                self._restore()
                # What a session's first action on an instance pays for its files (docs/BENCHMARKS.md).
                logger.info(
                    "restored %d files: %d bytes read in %.3f s",
                    len(self._files),
                    self._read_bytes,
                    time.monotonic() - started,
                )
                return
            except (NotFound, Conflict):
                # An object went away under us (a base rewrite cleaned up), or another writer
                # rewrote the sealed base first: list again.
                if attempt == RESTORE_ATTEMPTS - 1 or not self.exists():
                    raise

    def _restore(self) -> None:
        listing = {
            info.name[len(self._prefix) :]: info.generation
            for info in self._storage.list(WORKSPACES_BUCKET, self._prefix + MANIFEST)
        }
        if MANIFEST not in listing:
            raise NotFound(f"the workspace of session {self._session_id} does not exist")
        base = listing[MANIFEST]
        chain = sorted(name for name in listing if name.startswith(f"{DELTAS}/{base}/"))
        self._load_state()
        if base == self._generation and len(chain) >= self._applied:
            wanted, packs, start = {rel: _entry(e) for rel, e in self._files.items()}, dict(self._packs), self._applied
        else:
            manifest = json.loads(self._read(MANIFEST, base))
            wanted, packs, start = manifest["files"], _packs_of(manifest), 0
        fetched: dict[str, zipfile.ZipFile] = {}
        for name in chain[start:]:
            archive = fetched[name] = self._fetch(name)
            for rel, entry in json.loads(archive.read(CHANGES))["files"].items():
                if entry is None:
                    wanted.pop(rel, None)
                else:
                    wanted[rel] = entry
            packs |= dict.fromkeys((item for item in archive.namelist() if item != CHANGES), name)
        self._files = self._sync(wanted, packs, fetched)
        self._generation, self._applied = base, len(chain)
        self._packs = _live(packs, wanted)
        if self._applied >= MAX_DELTAS:
            # Sealed, and its writer died before rewriting the base: finish its work.
            self._rewrite_base()
        self._write_state()

    def _sync(
        self, wanted: dict[str, Entry], packs: dict[str, str], fetched: dict[str, zipfile.ZipFile]
    ) -> dict[str, Entry]:
        """Make the disk hold `wanted`; returns what it holds, as _scan() would, without a second walk."""
        self._home.mkdir(exist_ok=True)
        self._home.chmod(0o711)
        self.path.mkdir(exist_ok=True)
        local = self._scan()
        gone = set(local) - set(wanted)
        for rel in gone:
            confined.unlink(self.path, rel)
            del local[rel]
        missing = [rel for rel, entry in wanted.items() if local.get(rel, {}).get("sha256") != entry["sha256"]]
        by_object: dict[str, list[str]] = {}
        for rel in missing:
            by_object.setdefault(packs[wanted[rel]["sha256"]], []).append(rel)
        for name, paths in by_object.items():
            archive = fetched.get(name) or self._fetch(name)
            for rel in paths:
                # A command may have swapped a folder for a link: a restore writes through none.
                confined.write(self.path, rel, archive.read(wanted[rel]["sha256"]), wanted[rel]["mode"])
        for rel, entry in wanted.items():
            if rel not in missing and local[rel]["mode"] != entry["mode"]:
                confined.set_mode(self.path, rel, entry["mode"])
            if rel in missing or local[rel]["mode"] != entry["mode"]:
                local[rel] = _entry_of(os.lstat(self.path / rel), entry["sha256"])
        if gone:
            confined.remove_empty_folders(self.path)
        return local

    def save(self) -> SaveReport:
        current = self._scan()
        if self._generation == 0:
            return self._save_whole(current)
        changes: dict[str, Entry | None] = {
            rel: _entry(entry) for rel, entry in current.items() if _changed(entry, self._files.get(rel))
        }
        changes |= dict.fromkeys(set(self._files) - set(current))
        if not changes:
            return SaveReport(0, len(current), 0, self._generation, changed=False)
        if self._applied >= MAX_DELTAS:
            self._rewrite_base()  # a sealed chain takes no more deltas
        new = {entry["sha256"]: rel for rel, entry in changes.items() if entry and entry["sha256"] not in self._packs}
        name = _delta_name(self._generation, self._applied + 1)
        data = self._zip(new, {CHANGES: json.dumps({"files": changes}).encode()})
        self._storage.write(WORKSPACES_BUCKET, self._prefix + name, data, "application/zip", if_generation_match=0)
        self._files, self._applied = current, self._applied + 1
        # Contents no file holds any more stay listed until the base is rewritten: harmless, and
        # pruning them here would cost every save a pass over the whole workspace.
        self._packs |= dict.fromkeys(new, name)
        if self._applied >= MAX_DELTAS:
            try:
                self._rewrite_base()
            except Conflict:
                pass  # another writer rewrote it from this same chain
        self._write_state(to_disk=False)
        removed = sum(1 for entry in changes.values() if entry is None)
        return SaveReport(len(new), len(current) - len(new), removed, self._generation)

    def _save_whole(self, current: dict[str, Entry]) -> SaveReport:
        """The first save: every content in one pack, then the manifest, which must not exist yet."""
        pack = f"packs/{uuid.uuid4().hex}.zip"
        contents = {entry["sha256"]: rel for rel, entry in current.items()}
        self._storage.write(WORKSPACES_BUCKET, self._prefix + pack, self._zip(contents), "application/zip")
        self._files, self._packs, self._applied = current, dict.fromkeys(contents, pack), 0
        self._generation = self._write_manifest(0)
        self._write_state()
        return SaveReport(len(contents), 0, 0, self._generation)

    def _rewrite_base(self) -> None:
        """The base from the working copy, which holds the whole sealed chain; then the litter goes."""
        self._packs = _live(self._packs, self._files)
        holders = set(self._packs.values())
        if len(holders) > MAX_PACKS:
            # Fold what the deltas hold into one pack (a cost in proportion to what changed),
            # or everything once the packs themselves pile up.
            packs = {name for name in holders if not name.startswith(DELTAS)}
            everything = len(packs) >= MAX_PACKS // 2
            rel_of = {entry["sha256"]: rel for rel, entry in self._files.items()}
            contents = {d: rel_of[d] for d, name in self._packs.items() if everything or name.startswith(DELTAS)}
            pack = f"packs/{uuid.uuid4().hex}.zip"
            self._storage.write(WORKSPACES_BUCKET, self._prefix + pack, self._zip(contents), "application/zip")
            self._packs |= dict.fromkeys(contents, pack)
        self._generation, self._applied = self._write_manifest(self._generation), 0
        kept = set(self._packs.values()) | {MANIFEST}
        for info in list(self._storage.list(WORKSPACES_BUCKET, self._prefix)):
            name = info.name[len(self._prefix) :]
            if name not in kept and not name.startswith(f"{DELTAS}/{self._generation}/"):
                self._storage.delete(WORKSPACES_BUCKET, info.name)

    def _write_manifest(self, if_generation_match: int) -> int:
        manifest = {"version": 3, "files": {rel: _entry(e) for rel, e in self._files.items()}, "packs": self._packs}
        return self._storage.write(
            WORKSPACES_BUCKET,
            self._prefix + MANIFEST,
            json.dumps(manifest).encode(),
            "application/json",
            if_generation_match=if_generation_match,
        )

    def destroy(self) -> None:
        self._storage.delete_prefix(WORKSPACES_BUCKET, self._prefix)
        shutil.rmtree(self._home, ignore_errors=True)
        self._states.pop(self._state_file, None)

    def _fetch(self, name: str) -> zipfile.ZipFile:
        return zipfile.ZipFile(io.BytesIO(self._read(name)))

    def _read(self, name: str, generation: int | None = None) -> bytes:
        data = self._storage.read(WORKSPACES_BUCKET, self._prefix + name, generation)
        self._read_bytes += len(data)
        return data

    def _zip(self, contents: dict[str, str], extra: dict[str, bytes] | None = None) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for digest, rel in contents.items():
                # Opened through real folders only; the archive reads the very file opened.
                descriptor = confined.open_file(self.path, rel)
                try:
                    if not S_ISREG(os.fstat(descriptor).st_mode):
                        raise ActionFailed(f"{rel} changed while the workspace was saved")
                    archive.write(f"/proc/self/fd/{descriptor}", digest)
                finally:
                    os.close(descriptor)
            for name, data in (extra or {}).items():
                archive.writestr(name, data)
        return buffer.getvalue()

    def _scan(self) -> dict[str, Entry]:
        """Every regular file, hashed only when its size or mtime moved since last seen.

        Files of the given installed tree, as given, are not the workspace's own: left out.
        """
        found: dict[str, Entry] = {}
        base = self.base()
        prefix = base["folder"] + "/" if base else None
        given = tree_index(self._disk.tree_home(base["key"])) if base else {}
        top = str(self.path)
        # Through folders opened without following links (os.fwalk): a link a command left in
        # place of a folder leads the job's reads nowhere else.
        for path, folders, names, folder in os.fwalk(top):
            rel_folder = "" if path == top else path[len(top) + 1 :] + "/"
            # No store holds a name that is not text, nor a path too deep to reach: not kept.
            folders[:] = [name for name in folders if _utf8(name) and len(rel_folder + name) <= MAX_PATH_CHARS]
            for name in names:
                rel = rel_folder + name
                if not _utf8(name) or len(rel) > MAX_PATH_CHARS:
                    continue
                try:
                    stat = os.stat(name, dir_fd=folder, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not S_ISREG(stat.st_mode):
                    continue  # links and devices are not part of a workspace
                as_given = prefix and rel.startswith(prefix) and given.get(rel[len(prefix) :])
                if as_given == (stat.st_size, stat.st_mtime_ns, _mode(stat)):
                    continue  # the installed tree's own file, as given
                known = self._files.get(rel)
                if known and known["size"] == stat.st_size and known["mtime_ns"] == stat.st_mtime_ns:
                    # The very entry, when nothing moved: save() tells changes by identity.
                    mode = _mode(stat)
                    found[rel] = known if known["mode"] == mode else known | {"mode": mode}
                elif digest := _sha256_at(folder, name):
                    found[rel] = _entry_of(stat, digest)
        return found

    def _load_state(self) -> None:
        state = self._states.get(self._state_file)
        try:
            if state is None:
                state = json.loads(self._state_file.read_text())
            if state.get("version") != 3:
                raise KeyError("version")
            self._generation, self._applied = int(state["generation"]), int(state["applied"])
            self._files, self._packs = state["files"], state["packs"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            self._generation, self._applied, self._files, self._packs = 0, 0, {}, {}

    def _write_state(self, to_disk: bool = True) -> None:
        """Kept in this process, and on disk at restores; a save skips the disk (a few ms for 1,000 files).

        A stale state file only costs a later process some hashing: a restore derives what the
        working copy must hold from Cloud Storage and checks the disk against it.
        """
        state = {
            "version": 3,
            "generation": self._generation,
            "applied": self._applied,
            "files": self._files,
            "packs": self._packs,
        }
        self._states[self._state_file] = state
        if to_disk:
            self._state_file.write_text(json.dumps(state))


def _sha256_at(folder: int, name: str) -> str | None:
    """The file's sha256, read through the descriptor opened; None when it is no longer a file."""
    descriptor = os.open(name, confined.FILE_FLAGS, dir_fd=folder)
    try:
        if not S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return file_sha256(f"/proc/self/fd/{descriptor}")
    finally:
        os.close(descriptor)


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # os.fsdecode's surrogate escapes of bytes that are not UTF-8
        return False
    return True


def _entry(entry: Entry) -> Entry:
    """What the store keeps of a file: content, size and mode (not its local mtime)."""
    return {"sha256": entry["sha256"], "size": entry["size"], "mode": entry["mode"]}


def _mode(stat: os.stat_result) -> int:
    return 0o755 if stat.st_mode & 0o100 else 0o644


def _entry_of(stat: os.stat_result, digest: str) -> Entry:
    return {"sha256": digest, "size": stat.st_size, "mode": _mode(stat), "mtime_ns": stat.st_mtime_ns}


def _changed(entry: Entry, known: Entry | None) -> bool:
    # The scan hands back the very entry it was given when nothing moved.
    return entry is not known and (known is None or _entry(entry) != _entry(known))


def _live(packs: dict[str, str], files: dict[str, Entry]) -> dict[str, str]:
    """Where each content the files hold is kept, and nothing else."""
    digests = {entry["sha256"] for entry in files.values()}
    return {digest: name for digest, name in packs.items() if digest in digests}


def _packs_of(manifest: dict[str, Any]) -> dict[str, str]:
    """sha256 -> object name; version 2 manifests named packs by id."""
    if manifest.get("version") == 2:
        return {digest: f"packs/{pack}.zip" for digest, pack in manifest["packs"].items()}
    return dict(manifest["packs"])
