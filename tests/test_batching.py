"""Group calls: concurrent callers share calls, and each gets its own result or error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import firestore

from tests.test_recorder import event, new_request, queue
from vibesdk_gcp.batching import GroupCall
from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import utcnow


def test_waiting_callers_share_a_call_and_get_their_own_outcomes() -> None:
    groups: list[list[int]] = []
    first_call_started = threading.Event()

    def call(items: list[int]) -> list[int | BaseException]:
        groups.append(items)
        first_call_started.set()
        time.sleep(0.2)  # everyone else arrives while this call is in flight
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in items]

    group = GroupCall("test", call, limit=100)
    with ThreadPoolExecutor(max_workers=20) as pool:
        first = pool.submit(group, 0)
        first_call_started.wait(5)
        rest = [pool.submit(group, n) for n in range(1, 20)]
        assert first.result() == 0
        for n, future in enumerate(rest, start=1):
            if n % 2:
                with pytest.raises(ValueError, match=f"odd {n}"):
                    future.result()
            else:
                assert future.result() == n * 10
    assert groups[0] == [0] and sorted(n for g in groups[1:] for n in g) == list(range(1, 20))
    assert len(groups) <= 3  # 20 callers, a handful of calls


def test_a_call_that_raises_fails_only_its_group() -> None:
    calls = iter([RuntimeError("down"), None])

    def call(items: list[str]) -> list[str]:
        error = next(calls)
        if error:
            raise error
        return items

    group = GroupCall("test", call, limit=10)
    with pytest.raises(RuntimeError, match="down"):
        group("a")
    assert group("b") == "b"


def test_one_bad_run_in_a_shared_batch_fails_alone(store: RunStore) -> None:
    """A POST for a session that is gone shares a batch with good ones: only it fails."""
    good = [new_request() for _ in range(12)]
    gone = new_request()
    with ThreadPoolExecutor(max_workers=13) as pool:
        futures = [pool.submit(store.queue_run, request, True) for request in good]
        bad = pool.submit(store.queue_run, gone, False)
        for future in futures:
            future.result()
        with pytest.raises(ServiceUnavailable):
            bad.result()
    assert all(store.get_run(r.sessionId, r.runId)["status"] == "queued" for r in good)


def test_many_runs_events_at_once_each_land_once(store: RunStore) -> None:
    requests = [queue(store) for _ in range(30)]
    events = [event(r, 2, "succeeded", startedAt=utcnow()) for r in requests]
    with ThreadPoolExecutor(max_workers=30) as pool:
        decisions = list(pool.map(store.apply, events))
    assert all(decision.advance for decision in decisions)
    for request in requests:
        run = store.get_run(request.sessionId, request.runId)
        assert [t["status"] for t in run["transitions"]] == ["queued", "running", "succeeded"]
        assert store.get_session(request.sessionId)["status"] == "succeeded"


def test_claims_count_executions(store: RunStore) -> None:
    request = queue(store)
    assert store.claim(request.sessionId, request.runId, "m1", 1, lease_seconds=0.2) == "claimed"
    assert store.claim(request.sessionId, request.runId, "m2", 1, lease_seconds=60) == "busy"
    assert store.get_run(request.sessionId, request.runId)["claims"] == 1
    time.sleep(0.3)  # the holder's lease lapses: another delivery takes over
    assert store.claim(request.sessionId, request.runId, "m2", 1, lease_seconds=60) == "claimed"
    assert store.get_run(request.sessionId, request.runId)["claims"] == 2


def test_a_malformed_run_fails_only_its_own_event(store: RunStore) -> None:
    good = [queue(store) for _ in range(10)]
    bad = queue(store)
    store._run_ref(bad.sessionId, bad.runId).update({"transitions": firestore.DELETE_FIELD})
    events = [event(r, 2, "succeeded", startedAt=utcnow()) for r in [*good, bad]]
    with ThreadPoolExecutor(max_workers=11) as pool:
        futures = [pool.submit(store.apply, e) for e in events]
        with pytest.raises(KeyError):
            futures[-1].result()
        assert all(future.result().advance for future in futures[:-1])
    assert all(store.get_run(r.sessionId, r.runId)["status"] == "succeeded" for r in good)
