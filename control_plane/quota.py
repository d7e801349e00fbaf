"""The per-owner bound on queued and running runs, without a count query on every POST.

Counting an owner's active runs is a collection-group aggregation; the Firestore emulator (and
Firestore's bill) charges it by the runs it scans, and it was the dearest call of a POST. So an
owner's count is taken at most every REFRESH_SECONDS, and in between the runs this process has
admitted since are added to it. The estimate can only err high (runs that finished meanwhile still
count), and a refusal is always confirmed by a fresh count, so nobody is refused wrongly; several
control-plane instances see each other's new runs at their next count (docs/SECURITY.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from vibesdk_gcp.errors import TooMany

REFRESH_SECONDS = 1.0
# Owners remembered at most; the stalest are forgotten first (and simply counted again).
MAX_OWNERS = 10_000


@dataclass
class _Tally:
    counted_at: float
    active: int


class ActiveRunQuota:
    def __init__(
        self,
        count: Callable[[str], int],
        limit: int,
        refresh: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._count, self._limit, self._refresh, self._clock = count, limit, refresh, clock
        self._tallies: dict[str, _Tally] = {}
        self._lock = threading.Lock()

    def admit(self, owner: str) -> None:
        """Count one more run for the owner, or raise TooMany when the owner is at the limit."""
        with self._lock:
            tally = self._tallies.get(owner)
            if tally and self._clock() - tally.counted_at < self._refresh and tally.active < self._limit:
                tally.active += 1
                return
        counted_at, active = self._clock(), self._count(owner)
        with self._lock:
            if active >= self._limit:
                self._remember(owner, _Tally(counted_at, active))
                raise TooMany(f"{active} runs queued or running; the limit is {self._limit}", retry_after=5)
            self._remember(owner, _Tally(counted_at, active + 1))

    def _remember(self, owner: str, tally: _Tally) -> None:
        self._tallies.pop(owner, None)
        if len(self._tallies) >= MAX_OWNERS:
            del self._tallies[next(iter(self._tallies))]
        self._tallies[owner] = tally
