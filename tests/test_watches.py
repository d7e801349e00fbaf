"""Waits on Firestore's listeners, against the emulator: woken by the write, never by a poll."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from tests.test_recorder import event, queue
from vibesdk_gcp.errors import TooMany
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.runs.watches import MAX_LISTENERS, SLOTS, Listener, ListenerSlots, Update


def test_a_wait_wakes_when_the_terminal_state_lands(store: RunStore) -> None:
    request = queue(store)
    landed: list[float] = []

    def finish() -> None:
        time.sleep(0.5)
        store.apply(event(request, 1, "running"))
        store.apply(event(request, 2, "succeeded"))
        landed.append(time.monotonic())

    writer = threading.Thread(target=finish)
    writer.start()
    run = asyncio.run(store.until_terminal(request.sessionId, request.runId, timeout=10))
    woken = time.monotonic()
    writer.join()
    assert run is not None and run.status == "succeeded"
    # Woken by the write itself: well before a poll every second would have seen it.
    assert woken - landed[0] < 0.5


def test_a_wait_on_a_run_already_terminal_answers_at_once(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 2, "failed", error="boom"))
    run = asyncio.run(store.until_terminal(request.sessionId, request.runId, timeout=5))
    assert run is not None and run.status == "failed" and run.error == "boom"


def test_a_wait_past_its_timeout_answers_none_and_the_run_goes_on(store: RunStore) -> None:
    request = queue(store)
    assert asyncio.run(store.until_terminal(request.sessionId, request.runId, timeout=0.3)) is None
    store.apply(event(request, 2, "succeeded"))
    assert store.get_run(request.sessionId, request.runId).status == "succeeded"


def test_a_session_listener_sees_each_run_change(store: RunStore) -> None:
    request = queue(store)

    async def watch() -> list[str]:
        seen: list[str] = []
        async with store.session_runs(request.sessionId) as listener:
            async for snapshots in listener:
                status = snapshots[-1].to_dict()["status"]
                if not seen or seen[-1] != status:
                    seen.append(status)
                if status == "queued":
                    await asyncio.to_thread(store.apply, event(request, 1, "running"))
                elif status == "running":
                    await asyncio.to_thread(store.apply, event(request, 2, "succeeded"))
                else:
                    return seen
        return seen

    assert asyncio.run(asyncio.wait_for(watch(), 10)) == ["queued", "running", "succeeded"]


# The thread each Firestore listener's stream runs in (google.api_core.bidi).
LISTENER_THREAD = "Thread-ConsumeBidirectionalStream"


def listener_threads() -> int:
    return sum(thread.name == LISTENER_THREAD for thread in threading.enumerate())


def settled(count: Callable[[], int], to: int, timeout: float = 15) -> int:
    """`count()` once it is `to`, or as it stands when `timeout` s pass."""
    deadline = time.monotonic() + timeout
    while count() != to and time.monotonic() < deadline:
        time.sleep(0.05)
    return count()


def test_waits_cut_short_while_subscribing_leave_no_listener(store: RunStore) -> None:
    request = queue(store)
    threads, slots = listener_threads(), SLOTS.open

    async def cut_short() -> None:
        for attempt in range(20):
            # Timeouts from 0 to 5 ms: most end while the listener is still being subscribed.
            assert await store.until_terminal(request.sessionId, request.runId, timeout=attempt / 4000) is None
        for attempt in range(10):
            task = asyncio.ensure_future(store.until_terminal(request.sessionId, request.runId, timeout=10))
            await asyncio.sleep(attempt / 2000)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cut_short())
    assert settled(listener_threads, threads) == threads
    assert settled(lambda: SLOTS.open, slots) == slots


class Target:
    """A listenable that records its callback; its watch only records being closed."""

    def __init__(self) -> None:
        self.callback: Any = None
        self.closed = threading.Event()

    def on_snapshot(self, callback: Any) -> Any:
        self.callback = callback
        return self

    def unsubscribe(self) -> None:
        self.closed.set()


def change(document_id: str, kind: str = "MODIFIED") -> Any:
    return SimpleNamespace(type=SimpleNamespace(name=kind), document=SimpleNamespace(id=document_id))


def test_a_listener_keeps_only_the_latest_snapshot_and_merges_the_changes() -> None:
    target = Target()

    async def fall_behind() -> Update:
        async with Listener(target, slots=ListenerSlots(1)) as listener:

            def write() -> None:
                for n in range(1000):
                    target.callback([n], [change(f"run-{n % 3}")], n)

            await asyncio.to_thread(write)  # all arrive before the reader reads
            return await listener.take()

    update = asyncio.run(fall_behind())
    assert update.snapshots == [999] and update.read_time == 999
    assert sorted(update.changed) == ["run-0", "run-1", "run-2"]
    assert target.closed.wait(5)


def test_a_process_opens_at_most_its_listeners_and_frees_each_as_it_closes() -> None:
    slots = ListenerSlots(1)

    async def two() -> None:
        async with Listener(Target(), slots=slots):
            with pytest.raises(TooMany) as refused:
                await Listener(Target(), slots=slots).__aenter__()
            assert refused.value.retry_after > 0
        assert settled(lambda: slots.open, 0) == 0
        async with Listener(Target(), slots=slots):
            assert slots.open == 1

    asyncio.run(two())
    assert MAX_LISTENERS < 100  # gRPC's concurrent streams per channel


def test_a_session_listener_asked_for_the_newest_reads_no_more(store: RunStore) -> None:
    first = queue(store)
    later = [queue(store, first.sessionId) for _ in range(2)]

    async def first_snapshot() -> list[str]:
        async with store.session_runs(first.sessionId, newest=2) as listener:
            return [snapshot.id for snapshot in await anext(aiter(listener))]

    assert sorted(asyncio.run(asyncio.wait_for(first_snapshot(), 10))) == sorted(r.runId for r in later)
