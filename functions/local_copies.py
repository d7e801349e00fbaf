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
from pathlib import Path

from functions.dependencies import CACHE_FOLDER, lock_of

KEPT_UNUSED_TREES = 2
_lock = threading.Lock()
_busy: dict[str, int] = {}


@contextlib.contextmanager
def in_use(session_id: str) -> Iterator[None]:
    """Marks a session's working copy as used by an action, so that no trim removes it meanwhile."""
    with _lock:
        _busy[session_id] = _busy.get(session_id, 0) + 1
    try:
        yield
    finally:
        with _lock:
            _busy[session_id] -= 1
            if not _busy[session_id]:
                del _busy[session_id]


def _last_used(home: Path) -> float:
    try:
        return max(home.stat().st_mtime, (home / "state.json").stat().st_mtime)
    except FileNotFoundError:
        return home.stat().st_mtime if home.exists() else 0.0


def trim(root: Path, keep: int) -> list[str]:
    """Drop the least recently used working copies past `keep`, then unused trees; returns the sessions dropped."""
    if not root.is_dir():
        return []
    with _lock:
        homes = [home for home in root.iterdir() if home.is_dir() and not home.name.startswith(".")]
        homes.sort(key=_last_used, reverse=True)
        dropped = [home for home in homes[keep:] if home.name not in _busy]
        for home in dropped:
            shutil.rmtree(home, ignore_errors=True)
        kept = [home for home in homes if home not in dropped]
    _trim_trees(root, kept)
    return [home.name for home in dropped]


def _trim_trees(root: Path, homes: list[Path]) -> None:
    cache = root / CACHE_FOLDER
    if not cache.is_dir():
        return
    used = set()
    for home in homes:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
            used.add(Path(json.loads((home / "base.json").read_text())["tree"]).parent.name)
    unused = [
        entry for entry in cache.iterdir() if entry.is_dir() and entry.name not in used and (entry / "used").exists()
    ]
    unused.sort(key=lambda entry: (entry / "used").stat().st_mtime, reverse=True)
    for entry in unused[KEPT_UNUSED_TREES:]:
        _drop_unless_held(cache, entry)


def _drop_unless_held(cache: Path, home: Path) -> None:
    """Drop a tree only when no action holds it: one may be between its check and giving it,
    before any working copy names it (functions/dependencies.py holds it under this lock)."""
    with open(lock_of(cache, home.name), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        try:
            shutil.rmtree(home, ignore_errors=True)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
