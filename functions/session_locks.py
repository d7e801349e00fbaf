"""One action at a time per session in this process: they share the session's working copy."""

from __future__ import annotations

import threading
import weakref


class SessionLocks:
    """A lock per session, kept while an action holds or waits for it.

    (Across processes each has its own copy, and the workspace's generation preconditions decide.)
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()

    def of(self, session_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(session_id)
            if lock is None:
                lock = threading.Lock()
                self._locks[session_id] = lock
            return lock
