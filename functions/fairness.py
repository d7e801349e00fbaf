"""Capacity shared between owners: one owner may run only so many actions at once in a job instance.

Without this, one owner's long commands took every worker of an instance and another owner's
createInstance waited minutes behind them. An action over its owner's share is negatively
acknowledged at once, holding no worker: Pub/Sub brings it back after the backoff.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from vibesdk_gcp.errors import Busy


def default_share(workers: int) -> int:
    """Half the instance's workers (functions-framework's THREADS: Settings.threads)."""
    return max(1, workers // 2)


class OwnerSlots:
    def __init__(self, share: int) -> None:
        assert share >= 1, f"an owner's share must be at least 1, got {share}"
        self.share = share
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self, owner: str) -> Iterator[None]:
        with self._lock:
            running = self._running.get(owner, 0)
            if running >= self.share:
                raise Busy(f"owner {owner} already runs {running} actions on this instance (its share); this one waits")
            self._running[owner] = running + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._running.pop(owner) - 1
                if left:
                    self._running[owner] = left
