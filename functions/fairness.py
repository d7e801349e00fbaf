"""Capacity shared between owners: one owner may run only so many actions at once, over every
job instance.

Without this, one owner's long commands took every worker and another owner's createInstance
waited minutes behind them. The share is half of all the job's workers (its instances at most,
VIBESDK_JOB_INSTANCES, times each one's threads), counted twice: here, in the instance, which
refuses at once what it alone already runs too much of; and with the run's claim in Firestore
(vibesdk_gcp/runs/claims.py), where each run of the owner holds one of its share for as long as
its lease, whichever instance runs it. An action over its owner's share is negatively
acknowledged at once, holding no worker: Pub/Sub brings it back after the backoff.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from vibesdk_gcp.errors import Busy


def default_share(threads: int, instances: int) -> int:
    """Half of all the job's workers: each instance's threads (functions-framework's THREADS:
    Settings.threads) times its instances at most."""
    return max(1, threads * instances // 2)


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
