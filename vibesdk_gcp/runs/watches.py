"""Waits on Firestore without polling: its listeners (on_snapshot) push each change of a document or a
query from the client's own thread (https://cloud.google.com/firestore/docs/query-data/listen); a
Listener hands them to the asyncio loop of the request that waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from google.cloud.firestore_v1.watch import Watch

from vibesdk_gcp import access
from vibesdk_gcp.names import RUNS_SUBCOLLECTION
from vibesdk_gcp.runs.calls import FirestoreCalls, Snapshot
from vibesdk_gcp.runs.documents import RunDoc
from vibesdk_gcp.state import TERMINAL

logger = logging.getLogger("vibesdk_gcp.runs")
Snapshots = list[Snapshot]


class Listenable(Protocol):
    def on_snapshot(self, callback: Any) -> Watch: ...


class Listener:
    """The snapshots of one document or query, each the whole current set, newest last."""

    def __init__(self, target: Listenable) -> None:
        self._target = target
        self._queue: asyncio.Queue[Snapshots] = asyncio.Queue()
        self._watch: Watch | None = None

    def __aiter__(self) -> AsyncIterator[Snapshots]:
        return self._snapshots()

    async def _snapshots(self) -> AsyncIterator[Snapshots]:
        while True:
            yield await self._queue.get()

    async def __aenter__(self) -> Listener:
        loop = asyncio.get_running_loop()

        def on_change(snapshots: Snapshots, changes: object, read_time: object) -> None:
            # The listener's thread: the queue is the loop's, so the loop puts.
            with contextlib.suppress(RuntimeError):  # the loop closed while the watch wound down
                loop.call_soon_threadsafe(self._queue.put_nowait, list(snapshots))

        access.note(access.FIRESTORE_READ, access.DATABASE)
        self._watch = await asyncio.to_thread(self._target.on_snapshot, on_change)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._watch is not None:
            # Closing joins the listener's threads; the answer need not wait for that.
            closing = asyncio.get_running_loop().run_in_executor(None, self._watch.unsubscribe)
            closing.add_done_callback(_log_failure)
            self._watch = None


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("a Firestore listener did not close cleanly: %s", future.exception())


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

    def session_runs(self, session_id: str) -> Listener:
        """Every run of the session, each time one changes."""
        return Listener(self._calls.session_ref(session_id).collection(RUNS_SUBCOLLECTION))
