"""One session's actions in the order they were queued, whatever order they are delivered in.

Eventarc's subscription is unordered (../shared/DESIGN.md), so a later action of a session may
arrive while an earlier one is still queued or running. It is not run then: the delivery is
negatively acknowledged (Pub/Sub brings it back after the backoff) and, so that it need not wait
for that, its message is held here; when this process ends the earlier run, it runs the held
ones next. Across instances, the one that ends a run starts the session's next queued run itself
from the request Firestore keeps beside it (functions/job.py), whichever instance its delivery
reached. Both are shortcuts: the redelivery is what guarantees a run runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from vibesdk_gcp.bounded import BoundedDict
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.runs import UnfinishedRun

# Runs this process has ended recently: the recorder may not have written them yet.
MAX_REMEMBERED_RUNS = 10_000
MAX_HELD_MESSAGES = 1_000
MAX_HELD_BYTES = 64 << 20


def runs_before(run_id: str, unfinished: list[UnfinishedRun]) -> list[str]:
    """Ids of the unfinished runs queued before run_id (by queue time, then id), oldest first."""
    mine = next((run for run in unfinished if run.runId == run_id), None)
    if mine is None:
        return []

    def key(run: UnfinishedRun) -> tuple[datetime, str]:
        return (run.createdAt, run.runId)

    return [run.runId for run in sorted(unfinished, key=key) if key(run) < key(mine)]


class SessionOrder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: BoundedDict[str, None] = BoundedDict(MAX_REMEMBERED_RUNS)
        self._held: OrderedDict[tuple[str, str], PubsubMessage] = OrderedDict()
        self._held_bytes = 0

    def ended(self, run_id: str) -> None:
        with self._lock:
            self._ended[run_id] = None

    def has_ended(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._ended

    def waiting_for(self, run_id: str, unfinished: list[UnfinishedRun]) -> list[str]:
        """The runs queued before run_id that have not ended, as far as this process knows."""
        with self._lock:
            return [earlier for earlier in runs_before(run_id, unfinished) if earlier not in self._ended]

    def hold(self, session_id: str, run_id: str, message: PubsubMessage) -> None:
        with self._lock:
            old = self._held.pop((session_id, run_id), None)
            self._held_bytes -= len(old.data) if old else 0
            if len(self._held) >= MAX_HELD_MESSAGES or self._held_bytes + len(message.data) > MAX_HELD_BYTES:
                return  # its redelivery will do
            self._held[(session_id, run_id)] = message
            self._held_bytes += len(message.data)

    def take_held(self, session_id: str) -> list[PubsubMessage]:
        """The messages held for a session, handed over once."""
        with self._lock:
            keys = [key for key in self._held if key[0] == session_id]
            taken = [self._held.pop(key) for key in keys]
            self._held_bytes -= sum(len(message.data) for message in taken)
            return taken
