"""Waits on Firestore's listeners, against the emulator: woken by the write, never by a poll."""

from __future__ import annotations

import asyncio
import threading
import time

from tests.test_recorder import event, queue
from vibesdk_gcp.runs import RunStore


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
