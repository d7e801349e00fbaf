"""What a job instance keeps on its disk between actions: recent working copies and the trees they use.

A working copy is only a cache of its session's files in Cloud Storage (every action saves before
it ends), and a tree one of the dependency cache (functions/dependencies.py). On Cloud Run the
disk is the instance's memory, so both are bounded: the least recently used working copies past
VIBESDK_MAX_LOCAL_WORKSPACES go, never one an action is using, and then every tree no remaining
working copy was given except the most recent few.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import threading
from collections.abc import Iterator

from functions.local_disk import Home, LocalDisk, TreeHome

KEPT_UNUSED_TREES = 2


class LocalCopies:
    """The working copies on one disk, and which of them actions are using (one per process:
    functions/context.py)."""

    def __init__(self, disk: LocalDisk) -> None:
        self._disk = disk
        self._lock = threading.Lock()
        self._busy: dict[str, int] = {}

    @contextlib.contextmanager
    def in_use(self, session_id: str) -> Iterator[None]:
        """Marks a session's working copy as used by an action, so that no trim removes it meanwhile."""
        with self._lock:
            self._busy[session_id] = self._busy.get(session_id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[session_id] -= 1
                if not self._busy[session_id]:
                    del self._busy[session_id]

    def trim(self, keep: int) -> list[str]:
        """Drop the least recently used working copies past `keep`, then unused trees; returns the sessions dropped."""
        with self._lock:
            homes = self._disk.homes()
            homes.sort(key=_last_used, reverse=True)
            dropped = [home for home in homes[keep:] if home.session_id not in self._busy]
            for home in dropped:
                shutil.rmtree(home.path, ignore_errors=True)
            kept = [home for home in homes if home not in dropped]
        self._trim_trees(kept)
        return [home.session_id for home in dropped]

    def _trim_trees(self, homes: list[Home]) -> None:
        used = set()
        for home in homes:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
                used.add(json.loads(home.base.read_text())["key"])
        unused = [tree for tree in self._disk.trees() if tree.key not in used and tree.used.exists()]
        unused.sort(key=lambda tree: tree.used.stat().st_mtime, reverse=True)
        for tree in unused[KEPT_UNUSED_TREES:]:
            self._drop_unless_held(tree)

    def _drop_unless_held(self, home: TreeHome) -> None:
        """Drop a tree only when no action holds it: one may be between its check and giving it,
        before any working copy names it (functions/dependencies.py holds it under this lock)."""
        with open(home.lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            try:
                shutil.rmtree(home.path, ignore_errors=True)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _last_used(home: Home) -> float:
    try:
        return max(home.path.stat().st_mtime, home.state.stat().st_mtime)
    except FileNotFoundError:
        return home.path.stat().st_mtime if home.path.exists() else 0.0
