"""Capacity shared between owners: one owner may run only so many actions at once, over every
job instance.

Without this, one owner's long commands took every worker and another owner's createInstance
waited minutes behind them. The share is half of all the job's workers (its instances at most,
VIBESDK_JOB_INSTANCES, times each one's threads), counted twice: here, in the instance, which
refuses at once what it alone already runs too much of; and with the run's claim in Firestore
(vibesdk_gcp/runs/claims.py), where each run of the owner holds one of its share for as long as
its lease, whichever instance runs it. An action over its owner's share is negatively
acknowledged at once, holding no worker, and written down as waiting for the share (in the owner's
ownerShares document): the instance that gives one of the share back starts the earliest issued
of them itself (functions/job.py), as Pub/Sub would bring it back only after its backoff.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

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
    def take(self, owner: str, refused: Callable[[], None] = lambda: None) -> Iterator[None]:
        """One of the owner's share on this instance. Over it, `refused` writes the action down as
        waiting for the share, and the count is looked at again: an action of the owner's that
        ended meanwhile may not have seen it waiting."""
        if not self._take(owner):
            refused()
            if not self._take(owner):
                raise Busy(
                    f"owner {owner} already runs {self.share} actions on this instance (its share); this one waits"
                )
        try:
            yield
        finally:
            with self._lock:
                left = self._running.pop(owner) - 1
                if left:
                    self._running[owner] = left

    def _take(self, owner: str) -> bool:
        with self._lock:
            running = self._running.get(owner, 0)
            if running >= self.share:
                return False
            self._running[owner] = running + 1
            return True
