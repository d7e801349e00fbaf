"""Waits on Firestore without polling: its listeners (on_snapshot) push each change of a document or a
query from the client's own thread (https://cloud.google.com/firestore/docs/query-data/listen); a
Listener hands them to the asyncio loop of the request that waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from google.cloud import firestore
from google.cloud.firestore_v1.watch import Watch

from vibesdk_gcp import access
from vibesdk_gcp.errors import TooMany
from vibesdk_gcp.names import RUNS_SUBCOLLECTION
from vibesdk_gcp.runs.calls import FirestoreCalls, Snapshot
from vibesdk_gcp.runs.documents import RunDoc
from vibesdk_gcp.state import TERMINAL

logger = logging.getLogger("vibesdk_gcp.runs")
Snapshots = list[Snapshot]
# Each listener is one gRPC stream on the client's channel, and a channel carries at most 100 at once
# (https://cloud.google.com/firestore/docs/best-practices#realtime_updates): a process keeps well below.
MAX_LISTENERS = 64
# A retry after this many seconds may find a listener free.
RETRY_AFTER_SECONDS = 5
# Subscribing opens a stream and unsubscribing joins its threads: both block, so both run here, on
# a few threads of their own, and never hold the threads that answer requests.
LISTEN_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="firestore-listen")


class Listenable(Protocol):
    def on_snapshot(self, callback: Any) -> Watch: ...


class ListenerSlots:
    """The process's open listeners, counted across threads and event loops."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open(self) -> int:
        return self._open

    def take(self) -> None:
        with self._lock:
            if self._open >= self.most:
                raise TooMany(f"this instance has {self.most} listeners open; retry shortly", RETRY_AFTER_SECONDS)
            self._open += 1

    def give_back(self) -> None:
        with self._lock:
            self._open -= 1


SLOTS = ListenerSlots(MAX_LISTENERS)


@dataclass
class Update:
    """What the listener saw since it was last read: the whole set as it stands now, the documents
    that were added or changed meanwhile (merged, by id), and when Firestore read the latest."""

    snapshots: Snapshots
    changed: dict[str, Snapshot] = field(default_factory=dict)
    read_time: datetime | None = None

    def merge(self, snapshots: Snapshots, changes: Iterable[Any], read_time: datetime | None) -> None:
        self.snapshots, self.read_time = snapshots, read_time
        for change in changes:
            if change.type.name == "REMOVED":
                self.changed.pop(change.document.id, None)
            else:
                self.changed[change.document.id] = change.document


class Listener:
    """The snapshots of one document or query, each the whole current set, newest last.

    Only the latest is kept (each holds everything), so that a reader that falls behind costs no
    memory; `take` also gives the documents changed meanwhile.
    """

    def __init__(self, target: Listenable, slots: ListenerSlots = SLOTS) -> None:
        self._target = target
        self._slots = slots
        self._pending: Update | None = None
        self._arrived = asyncio.Event()
        self._watch: Watch | None = None

    def __aiter__(self) -> AsyncIterator[Snapshots]:
        return self._snapshots()

    async def _snapshots(self) -> AsyncIterator[Snapshots]:
        while True:
            yield (await self.take()).snapshots

    async def take(self) -> Update:
        """What arrived since the last take, once something has; cut short, it loses nothing."""
        await self._arrived.wait()
        update, self._pending = self._pending, None
        self._arrived.clear()
        assert update is not None, "set only with an update pending"
        return update

    def _arrive(self, snapshots: Snapshots, changes: Iterable[Any], read_time: datetime | None) -> None:
        if self._pending is None:
            self._pending = Update(snapshots)
        self._pending.merge(snapshots, changes, read_time)
        self._arrived.set()

    async def __aenter__(self) -> Listener:
        loop = asyncio.get_running_loop()

        def on_change(snapshots: Snapshots, changes: list[Any], read_time: datetime | None) -> None:
            # The listener's thread: the update is the loop's, so the loop merges it.
            with contextlib.suppress(RuntimeError):  # the loop closed while the watch wound down
                loop.call_soon_threadsafe(self._arrive, list(snapshots), list(changes), read_time)

        self._slots.take()
        access.note(access.FIRESTORE_READ, access.DATABASE)
        subscribing = LISTEN_THREADS.submit(self._target.on_snapshot, on_change)
        try:
            # Shielded: a cancellation (a timeout, a client gone) cannot stop the subscribe midway,
            # and the Watch it makes is closed below rather than left open for good.
            self._watch = await asyncio.shield(asyncio.wrap_future(subscribing))
        except BaseException:
            subscribing.add_done_callback(self._close_made)
            raise
        return self

    def _close_made(self, subscribing: Future[Watch]) -> None:
        if subscribing.cancelled() or subscribing.exception() is not None:
            self._slots.give_back()
        else:
            self._close(subscribing.result())

    def _close(self, watch: Watch) -> None:
        # Closing joins the listener's threads; nothing need wait for that.
        closing = LISTEN_THREADS.submit(watch.unsubscribe)
        closing.add_done_callback(self._closed)

    def _closed(self, closing: Future[None]) -> None:
        self._slots.give_back()
        if not closing.cancelled() and closing.exception() is not None:
            logger.warning("a Firestore listener did not close cleanly: %s", closing.exception())

    async def __aexit__(self, *exc_info: object) -> None:
        """Leave the listener; again (a stream's deadline, then its end) does nothing."""
        if self._watch is not None:
            watch, self._watch = self._watch, None
            self._close(watch)


class Watches:
    def __init__(self, calls: FirestoreCalls) -> None:
        self._calls = calls

    async def until_terminal(self, session_id: str, run_id: str, timeout: float) -> RunDoc | None:
        """The run once it has succeeded or failed; None when `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout), Listener(self._calls.run_ref(session_id, run_id)) as listener:
                async for snapshots in listener:
                    found = [s.to_dict() for s in snapshots if s.exists]
                    if found and found[-1] and found[-1].get("status") in TERMINAL:
                        return RunDoc.model_validate(found[-1])
        except TimeoutError:
            return None
        raise AssertionError("a listener's snapshots never end")

    def session(self, session_id: str, slots: ListenerSlots = SLOTS) -> Listener:
        """The session's document, each time it changes."""
        return Listener(self._calls.session_ref(session_id), slots)

    def session_runs(self, session_id: str, newest: int = 100) -> Listener:
        """The session's `newest` runs (Firestore reads and bills no more), each time one changes; a
        run that falls out of the newest leaves as a removal. The query is Queries.runs_of's."""
        access.note(access.FIRESTORE_LIST, access.DATABASE)  # a listener on a collection lists it
        query = (
            self._calls.session_ref(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .order_by("createdAt", direction=firestore.Query.DESCENDING)
            .limit(newest)
        )
        return Listener(query)
