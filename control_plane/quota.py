"""The per-owner bound on queued and running runs, without a count query on every POST.

Counting an owner's active runs is a collection-group aggregation; the Firestore emulator (and
Firestore's bill) charges it by the runs it scans, and it was the dearest call of a POST. So an
owner's count is taken at most every REFRESH_SECONDS, and in between the runs this process has
admitted since are added to it. The estimate can only err high (runs that finished meanwhile still
count), and a refusal is always confirmed by a fresh count, so nobody is refused wrongly; several
control-plane instances see each other's new runs at their next count (docs/SECURITY.md).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vibesdk_gcp.bounded import BoundedDict
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
        self._tallies: BoundedDict[str, _Tally] = BoundedDict(MAX_OWNERS)
        self._lock = threading.Lock()
        self._owner_locks: dict[str, threading.Lock] = {}
        # Runs admitted but not written yet: no count can see them.
        self._in_flight: dict[str, int] = {}

    @contextlib.contextmanager
    def admission(self, owner: str) -> Iterator[None]:
        """Admit one run for the owner (or raise TooMany) while it is being written."""
        self.admit(owner, hold=True)
        try:
            yield
        finally:
            with self._lock:
                left = self._in_flight.pop(owner, 1) - 1
                if left > 0:
                    self._in_flight[owner] = left

    def admit(self, owner: str, hold: bool = False) -> None:
        """Count one more run for the owner, or raise TooMany when the owner is at the limit.

        One owner's admissions go one at a time (a lock per owner), and a count adds the runs
        admitted but not written yet: concurrent POSTs that each counted on their own all saw
        the same count, and let through several times the limit.
        """
        with self._owner_lock(owner):
            with self._lock:
                tally = self._tallies.get(owner)
                if tally and self._clock() - tally.counted_at < self._refresh and tally.active < self._limit:
                    tally.active += 1
                    self._hold(owner, hold)
                    return
            counted_at, active = self._clock(), self._count(owner)
            with self._lock:
                active += self._in_flight.get(owner, 0)
                if active >= self._limit:
                    self._remember(owner, _Tally(counted_at, active))
                    raise TooMany(f"{active} runs queued or running; the limit is {self._limit}", retry_after=5)
                self._remember(owner, _Tally(counted_at, active + 1))
                self._hold(owner, hold)

    def _hold(self, owner: str, hold: bool) -> None:
        if hold:
            self._in_flight[owner] = self._in_flight.get(owner, 0) + 1

    def _owner_lock(self, owner: str) -> threading.Lock:
        with self._lock:
            lock = self._owner_locks.pop(owner, None) or threading.Lock()
            self._owner_locks[owner] = lock  # most recent last
            if len(self._owner_locks) > MAX_OWNERS:
                stalest = next(iter(self._owner_locks))
                if not self._owner_locks[stalest].locked():
                    del self._owner_locks[stalest]
            return lock

    def _remember(self, owner: str, tally: _Tally) -> None:
        self._tallies[owner] = tally
