"""Group calls: concurrent callers share calls, and each gets its own result or error."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.cloud import firestore
from pydantic import ValidationError

from tests.test_recorder import event, new_request, queue
from vibesdk_gcp.batching import GroupCall
from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.runs import ClaimOutcome, RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll for a condition rather than sleep for a guess; fail saying what never happened."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.005)


def waiting(group: GroupCall[Any, Any]) -> int:
    """How many callers are waiting for the group's next call."""
    with group._ready:
        return len(group._waiting)


def test_waiting_callers_share_a_call_and_get_their_own_outcomes() -> None:
    groups: list[list[int]] = []
    first_call_started = threading.Event()
    release_first_call = threading.Event()

    def call(items: list[int]) -> list[int | BaseException]:
        groups.append(items)
        if len(groups) == 1:
            first_call_started.set()
            assert release_first_call.wait(30), "the first call was never released"
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in items]

    group = GroupCall("test", call, limit=100)
    with ThreadPoolExecutor(max_workers=20) as pool:
        first = pool.submit(group, 0)
        assert first_call_started.wait(30), "the first caller's call never started"
        rest = [pool.submit(group, n) for n in range(1, 20)]
        # Everyone else arrives while the first call is in flight (however slow the machine).
        wait_until(lambda: waiting(group) == 19, "19 callers waiting behind the first call")
        release_first_call.set()
        assert first.result() == 0
        for n, future in enumerate(rest, start=1):
            if n % 2:
                with pytest.raises(ValueError, match=f"odd {n}"):
                    future.result()
            else:
                assert future.result() == n * 10
    assert groups == [[0], list(range(1, 20))]  # 20 callers, two calls: the 19 waiting share one


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


def test_one_bad_run_in_a_shared_batch_fails_alone(store: RunStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A POST for a session that is gone shares a batch with good ones: only it fails."""
    plug, good, gone = new_request(), [new_request() for _ in range(12)], new_request()
    batches: dict[int, list[str]] = {}  # each Firestore batch by id: the runs queued in it
    commits: list[tuple[list[str], str]] = []  # each commit: its runs, and "ok" or the error
    plug_committing, release_plug = threading.Event(), threading.Event()
    add, commit = store._queue.add, store._calls.commit

    def add_queued_run(batch: Any, request: SandboxRequest, new_session: bool, preview_token: str | None) -> None:
        batches.setdefault(id(batch), []).append(request.runId)
        add(batch, request, new_session, preview_token)

    def observed_commit(batch: Any) -> None:
        runs = batches.pop(id(batch))
        if runs == [plug.runId]:  # hold the group's thread until every other POST waits for it
            plug_committing.set()
            assert release_plug.wait(30), "the plug's commit was never released"
        try:
            commit(batch)
        except Exception as error:
            commits.append((runs, type(error).__name__))
            raise
        commits.append((runs, "ok"))

    monkeypatch.setattr(store._queue, "add", add_queued_run)
    monkeypatch.setattr(store._calls, "commit", observed_commit)
    with ThreadPoolExecutor(max_workers=14) as pool:
        plugged = pool.submit(store.queue_run, plug, True)
        assert plug_committing.wait(30), "the plug's batch was never committed"
        futures = [pool.submit(store.queue_run, request, True) for request in good]
        bad = pool.submit(store.queue_run, gone, False)
        wait_until(lambda: waiting(store._queue.group) == 13, "13 POSTs waiting for the next batch")
        release_plug.set()
        plugged.result()
        for future in futures:
            future.result()
        with pytest.raises(ServiceUnavailable, match="Firestore is unavailable"):
            bad.result()
    good_runs = {r.runId for r in good}
    # The 13 went in one batch, which the gone session spoiled; then each alone: only the gone one failed.
    assert commits[0] == ([plug.runId], "ok")
    shared, outcome = commits[1]
    assert set(shared) == good_runs | {gone.runId} and len(shared) == 13 and outcome == "NotFound"
    alone = {runs[0]: outcome for runs, outcome in commits[2:] if len(runs) == 1}
    assert len(commits) == 2 + 13 and alone == dict.fromkeys(good_runs, "ok") | {gone.runId: "NotFound"}
    assert all(store.get_run(r.sessionId, r.runId).status == "queued" for r in good)


def test_many_runs_events_at_once_each_land_once(store: RunStore) -> None:
    requests = [queue(store) for _ in range(30)]
    events = [event(r, 2, "succeeded", startedAt=utcnow()) for r in requests]
    with ThreadPoolExecutor(max_workers=30) as pool:
        decisions = list(pool.map(store.apply, events))
    assert all(decision.advance for decision in decisions)
    for request in requests:
        run = store.get_run(request.sessionId, request.runId)
        assert [t.status for t in run.transitions] == ["queued", "running", "succeeded"]
        assert store.get_session(request.sessionId).status == "succeeded"


def test_claims_count_executions(store: RunStore) -> None:
    request = queue(store)
    assert store.claim(request.sessionId, request.runId, "m1", 1, lease_seconds=60) is ClaimOutcome.CLAIMED
    assert store.claim(request.sessionId, request.runId, "m2", 1, lease_seconds=60) is ClaimOutcome.BUSY
    assert store.get_run(request.sessionId, request.runId).claims == 1
    # The holder's last renewal is a short one, and then it stops: its lease lapses.
    store.renew(request.sessionId, request.runId, 0.2)
    claim = store.get_run(request.sessionId, request.runId).claim
    assert claim is not None
    lease_until = claim.leaseUntil
    wait_until(lambda: utcnow() > lease_until, "the holder's lease lapsing")
    takeover = store.claim(request.sessionId, request.runId, "m2", 1, lease_seconds=60)
    assert takeover is ClaimOutcome.CLAIMED
    run = store.get_run(request.sessionId, request.runId)
    assert run.claims == 2 and run.claim is not None and run.claim.messageId == "m2"


def test_a_malformed_run_fails_only_its_own_event(store: RunStore) -> None:
    good = [queue(store) for _ in range(10)]
    bad = queue(store)
    store._calls.run_ref(bad.sessionId, bad.runId).update({"transitions": firestore.DELETE_FIELD})
    events = [event(r, 2, "succeeded", startedAt=utcnow()) for r in [*good, bad]]
    with ThreadPoolExecutor(max_workers=11) as pool:
        futures = [pool.submit(store.apply, e) for e in events]
        with pytest.raises(ValidationError, match="transitions"):  # the document names what it lacks
            futures[-1].result()
        assert all(future.result().advance for future in futures[:-1])
    assert all(store.get_run(r.sessionId, r.runId).status == "succeeded" for r in good)
