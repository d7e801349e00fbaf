"""The status recorder against the Firestore emulator: transactions through the state machine."""

from __future__ import annotations

import base64
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.context import Context
from functions.deadletters import DeadLetterBox
from functions.recorder import record
from functions.sweeper import sweep
from vibesdk_gcp import clients
from vibesdk_gcp.envelope import from_push_body
from vibesdk_gcp.names import DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_TOPIC
from vibesdk_gcp.runs import ClaimOutcome, RunStore
from vibesdk_gcp.schemas import PublishedPreview, RunStatus, SandboxRequest, SessionChanges, StatusEvent, utcnow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_request(session_id: str | None = None) -> SandboxRequest:
    return SandboxRequest(
        sessionId=session_id or str(uuid.uuid4()),
        runId=str(uuid.uuid4()),
        action="createInstance",
        templateName="static-site",
        issuedAt=utcnow(),
        owner="alice",
    )


def queue(store: RunStore, session_id: str | None = None) -> SandboxRequest:
    request = new_request(session_id)
    store.queue_run(request, new_session=session_id is None)
    return request


def event(request: SandboxRequest, seq: int, status: RunStatus, **extra: Any) -> StatusEvent:
    return StatusEvent(
        eventId=str(uuid.uuid4()),
        sessionId=request.sessionId,
        runId=request.runId,
        seq=seq,
        status=status,
        time=T0 + timedelta(seconds=seq),
        **extra,
    )


def push(payload: bytes) -> Any:
    return from_push_body({"message": {"messageId": "1", "data": base64.b64encode(payload).decode()}})


def test_transitions_recorded_in_order(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 1, "running"))
    store.apply(event(request, 2, "succeeded", session=SessionChanges(instanceId="i-1")))
    run = store.get_run(request.sessionId, request.runId)
    assert [t.status for t in run.transitions] == ["queued", "running", "succeeded"]
    session = store.get_session(request.sessionId)
    assert session.status == "succeeded"
    assert session.instanceId == "i-1"


def test_duplicate_event_changes_nothing(store: RunStore) -> None:
    request = queue(store)
    running = event(request, 1, "running")
    assert store.apply(running).advance
    before = store.get_run(request.sessionId, request.runId)
    again = store.apply(running)
    assert again.reason == "duplicate"
    assert store.get_run(request.sessionId, request.runId) == before


def test_out_of_order_events_end_in_order(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 2, "failed", error="boom"))
    late = store.apply(event(request, 1, "running"))
    assert late.record and not late.advance
    run = store.get_run(request.sessionId, request.runId)
    assert run.status == "failed"
    assert run.error == "boom"
    assert [t.seq for t in run.transitions] == [0, 1, 2]


def test_terminal_state_never_changes(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 2, "succeeded"))
    decision = store.apply(event(request, 3, "failed", error="late"))
    assert not decision.record
    assert store.get_run(request.sessionId, request.runId).status == "succeeded"


def test_older_run_does_not_overwrite_session_status(store: RunStore) -> None:
    first = queue(store)
    second = queue(store, first.sessionId)
    store.apply(event(second, 1, "running"))
    store.apply(event(first, 2, "failed", error="x"))
    session = store.get_session(first.sessionId)
    assert session.runId == second.runId
    assert session.status == "running"
    assert store.get_run(first.sessionId, first.runId).status == "failed"


def test_event_for_unknown_run_is_acknowledged(store: RunStore) -> None:
    request = SandboxRequest(sessionId="nobody", runId="nothing", action="getLogs", issuedAt=utcnow(), owner="alice")
    assert store.apply(event(request, 1, "running")).reason == "unknown run"


def test_recorder_dead_letters_malformed_event(context: Context) -> None:
    publisher, subscriber = clients.publisher_client(context.settings), clients.subscriber_client(context.settings)
    topic = publisher.create_topic(name=publisher.topic_path(context.settings.project, DEAD_LETTER_TOPIC)).name
    subscriber.create_subscription(
        name=subscriber.subscription_path(context.settings.project, DEAD_LETTER_SUBSCRIPTION), topic=topic
    )
    outcome = record(push(b'{"runId": "r"}'), context)
    assert outcome.error is not None and "StatusEvent" in outcome.error
    [letter] = DeadLetterBox(context.settings).peek()
    assert letter.source == "vibesdk-sandbox-status" and "StatusEvent" in letter.reason


def test_recorder_applies_valid_event(context: Context) -> None:
    request = queue(context.store)
    outcome = record(push(event(request, 1, "running").model_dump_json().encode()), context)
    assert outcome.error is None and outcome.decision is not None and outcome.decision.advance


def test_racing_events_of_one_run_all_land(store: RunStore) -> None:
    requests = [queue(store) for _ in range(8)]
    events = [event(r, seq, status) for r in requests for seq, status in ((1, "running"), (2, "succeeded"))]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(store.apply, events + events))  # every event twice, all at once
    for request in requests:
        run = store.get_run(request.sessionId, request.runId)
        assert run.status == "succeeded"
        assert [t.status for t in run.transitions] == ["queued", "running", "succeeded"]
        assert store.get_session(request.sessionId).status == "succeeded"


def test_terminal_event_of_quick_action_records_running_too(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 2, "succeeded", startedAt=T0))
    run = store.get_run(request.sessionId, request.runId)
    assert [(t.seq, t.status) for t in run.transitions] == [(0, "queued"), (1, "running"), (2, "succeeded")]
    assert run.transitions[1].at == T0
    # The running event, if it comes after all, is a duplicate.
    assert store.apply(event(request, 1, "running")).reason == "duplicate"


def test_an_action_changes_only_the_session_fields_it_sets(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 2, "succeeded", session=SessionChanges(instanceId="i-1")))
    deploy = queue(store, request.sessionId)
    preview = PublishedPreview(previewUrl="http://p.localhost/", deployedAt="2026-01-01T00:00:00Z")
    store.apply(event(deploy, 2, "succeeded", session=SessionChanges(preview=preview)))
    session = store.get_session(request.sessionId)
    assert (session.instanceId, session.preview) == ("i-1", preview)
    shutdown = queue(store, request.sessionId)
    store.apply(event(shutdown, 2, "succeeded", session=SessionChanges(instanceId=None, preview=None)))
    session = store.get_session(request.sessionId)
    assert (session.instanceId, session.preview) == (None, None)


def test_session_changes_in_the_result_of_a_previous_release_still_land(store: RunStore) -> None:
    request = queue(store)
    store.apply(event(request, 2, "succeeded", result={"session": {"instanceId": "i-1"}, "files": []}))
    assert store.get_session(request.sessionId).instanceId == "i-1"


def test_documents_are_written_with_the_same_fields_and_types(store: RunStore) -> None:
    request = queue(store)
    run_ref = store._calls.run_ref(request.sessionId, request.runId)
    session_ref = store._calls.session_ref(request.sessionId)
    run, session = run_ref.get().to_dict(), session_ref.get().to_dict()
    assert run is not None and session is not None
    assert {key: type(value).__name__ for key, value in run.items()} == {
        "runId": "str",
        "sessionId": "str",
        "owner": "str",
        "action": "str",
        "paramsDigest": "str",
        "status": "str",
        "seq": "int",
        "transitions": "list",
        "result": "NoneType",
        "error": "NoneType",
        "createdAt": "DatetimeWithNanoseconds",
        "updatedAt": "DatetimeWithNanoseconds",
        "expireAt": "DatetimeWithNanoseconds",
    }
    assert run["transitions"] == [
        {"seq": 0, "status": "queued", "at": run["createdAt"], "eventId": None, "deliveryAttempt": None}
    ]
    assert session == {
        "sessionId": request.sessionId,
        "owner": "alice",
        "agentId": None,
        "templateName": "static-site",
        "projectName": None,
        "instanceId": None,
        "preview": None,
        "status": "queued",
        "action": "createInstance",
        "runId": request.runId,
        "createdAt": run["createdAt"],
        "updatedAt": run["createdAt"],
        "unfinished": 1,
    }
    assert store.claim(request.sessionId, request.runId, "m1", 3, lease_seconds=60) is ClaimOutcome.CLAIMED
    claim = (run_ref.get().to_dict() or {})["claim"]
    assert {key: type(value).__name__ for key, value in claim.items()} == {
        "messageId": "str",
        "attempt": "int",
        "leaseUntil": "DatetimeWithNanoseconds",
    }
    store.apply(event(request, 2, "succeeded", startedAt=T0, session=SessionChanges(instanceId="i-1")))
    run, session = run_ref.get().to_dict() or {}, session_ref.get().to_dict() or {}
    assert run["transitions"][1:] == [
        {"seq": 1, "status": "running", "at": T0, "eventId": run["transitions"][2]["eventId"], "deliveryAttempt": None},
        {
            "seq": 2,
            "status": "succeeded",
            "at": T0 + timedelta(seconds=2),
            "eventId": run["transitions"][2]["eventId"],
            "deliveryAttempt": None,
        },
    ]
    assert (run["status"], run["seq"], run["result"], run["claims"]) == ("succeeded", 2, None, 1)
    assert (session["status"], session["instanceId"], session["unfinished"]) == ("succeeded", "i-1", 0)


def test_documents_of_the_first_release_are_read(store: RunStore) -> None:
    """Written before runs had an owner, a retention time or claims, and sessions a count of runs."""
    session_id, run_id = str(uuid.uuid4()), str(uuid.uuid4())
    store._calls.session_ref(session_id).set(
        {
            "sessionId": session_id,
            "owner": "alice",
            "agentId": None,
            "templateName": "static-site",
            "projectName": None,
            "instanceId": None,
            "preview": None,
            "status": "queued",
            "action": "createInstance",
            "runId": run_id,
            "createdAt": T0,
            "updatedAt": T0,
        }
    )
    transition = {"seq": 0, "status": "queued", "at": T0, "eventId": None, "deliveryAttempt": None}
    store._calls.run_ref(session_id, run_id).set(
        {
            "runId": run_id,
            "sessionId": session_id,
            "action": "createInstance",
            "paramsDigest": "sha256:0",
            "status": "queued",
            "seq": 0,
            "transitions": [transition],
            "result": None,
            "error": None,
            "createdAt": T0,
            "updatedAt": T0,
            "someFieldOfTheFuture": True,
        }
    )
    run = store.get_run(session_id, run_id)
    assert (run.owner, run.expireAt, run.claim, run.claims) == (None, None, None, 0)
    assert store.get_session(session_id).unfinished is None
    # Without a count, the claim cannot know the session has no other run: the order is checked.
    assert store.claim(session_id, run_id, "m1", 1, lease_seconds=60) is ClaimOutcome.CHECK_ORDER
    assert [r.runId for r in store.unfinished_in_session(session_id)] == [run_id]
    assert store.claim(session_id, run_id, "m1", 1, lease_seconds=60, check_order=False) is ClaimOutcome.CLAIMED
    request = SandboxRequest(sessionId=session_id, runId=run_id, action="createInstance", issuedAt=T0, owner="alice")
    assert store.apply(event(request, 2, "succeeded", session=SessionChanges(instanceId="i-1"))).advance
    assert store.get_session(session_id).instanceId == "i-1"


def test_sweep_ends_lapsed_and_long_queued_runs(context: Context) -> None:
    lapsed, waiting, ended = queue(context.store), queue(context.store), queue(context.store)
    for request in (lapsed, ended):
        claimed = context.store.claim(request.sessionId, request.runId, "m1", 1, lease_seconds=0, check_order=False)
        assert claimed is ClaimOutcome.CLAIMED
    context.store.end_claim(ended.sessionId, ended.runId)
    later = utcnow() + timedelta(seconds=60)
    assert sorted(sweep(context, now=later, grace=30, queue_timeout=30)) == sorted(
        [(lapsed.runId, "lease expired"), (waiting.runId, "expired in queue")]
    )
    assert context.store.get_run(lapsed.sessionId, lapsed.runId).error == "lease expired"
    assert context.store.get_run(ended.sessionId, ended.runId).status == "queued"  # the recorder's to end
