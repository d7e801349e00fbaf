"""Status events applied to their run and its session, through the state machine (vibesdk_gcp/state.py)."""

from __future__ import annotations

from google.cloud import firestore

from vibesdk_gcp.batching import GroupCall
from vibesdk_gcp.runs.calls import GROUP_LINGER_SECONDS, FirestoreCalls, Snapshot, Snapshots
from vibesdk_gcp.runs.documents import Fields, RunDoc, SessionDoc, Transition, insert_transition
from vibesdk_gcp.runs.engine import ReadDecideWrite, Shared
from vibesdk_gcp.schemas import StatusEvent, utcnow
from vibesdk_gcp.state import SEQ_QUEUED, SEQ_RUNNING, SEQ_TERMINAL, TERMINAL, Decision, decide

# The session fields a job of the previous release set through its result's "session" object.
SESSION_FIELDS_FROM_RESULT = ("instanceId", "preview")


class StatusEvents:
    def __init__(self, calls: FirestoreCalls) -> None:
        self._calls = calls
        # Concurrent status events share Firestore calls (vibesdk_gcp/batching.py).
        self._group = GroupCall(
            "apply-events", ReadDecideWrite(calls, self._refs, self._plan), limit=200, linger=GROUP_LINGER_SECONDS
        )

    def apply(self, event: StatusEvent) -> Decision:
        """Apply one status event to its run and the run's session, both or neither (engine.py)."""
        return self._group(event)

    def fail_queued(self, session_id: str, run_id: str, error: str) -> None:
        """End a run that never left the control plane (its message was not published)."""
        event = StatusEvent(
            eventId=f"control-plane-{run_id}",
            sessionId=session_id,
            runId=run_id,
            seq=SEQ_TERMINAL,
            status="failed",
            time=utcnow(),
            error=error,
        )
        self.apply(event)

    def _refs(self, event: StatusEvent) -> list[firestore.DocumentReference]:
        return [self._calls.run_ref(event.sessionId, event.runId), self._calls.session_ref(event.sessionId)]

    def _plan(self, event: StatusEvent, snapshots: Snapshots, batch: firestore.WriteBatch, shared: Shared) -> Decision:
        run_ref, session_ref = self._refs(event)
        run_snapshot, session_snapshot = snapshots[run_ref.path], snapshots[session_ref.path]
        if not run_snapshot.exists:
            return Decision(False, False, "unknown run")
        run = RunDoc.model_validate(run_snapshot.to_dict())
        seen = {transition.seq for transition in run.transitions}
        decision = decide(run.status, run.seq, seen, event.status, event.seq)
        if not decision.record:
            return decision
        self._calls.update_unchanged(batch, run_snapshot, run_update(event, run, decision))
        session_fields = session_update(event, _session(session_snapshot)) if decision.advance else {}
        if decision.advance and event.status in TERMINAL and session_snapshot.exists:
            session_fields["unfinished"] = firestore.Increment(-1)
        if session_fields:
            self._calls.update_unchanged(batch, session_snapshot, session_fields)
        return decision


def _session(snapshot: Snapshot) -> SessionDoc | None:
    document = snapshot.to_dict()
    return SessionDoc.model_validate(document) if document else None


def run_update(event: StatusEvent, run: RunDoc, decision: Decision) -> Fields:
    transition = Transition(
        seq=event.seq, status=event.status, at=event.time, eventId=event.eventId, deliveryAttempt=event.deliveryAttempt
    )
    transitions = insert_transition(run.transitions, transition)
    seen = {item.seq for item in transitions}
    if event.status in TERMINAL and event.startedAt and SEQ_RUNNING not in seen and SEQ_QUEUED in seen:
        # The action was quick: its running transition came inside this terminal event.
        running = Transition(
            seq=SEQ_RUNNING,
            status="running",
            at=event.startedAt,
            eventId=event.eventId,
            deliveryAttempt=event.deliveryAttempt,
        )
        transitions = insert_transition(transitions, running)
    update: Fields = {"transitions": [item.fields() for item in transitions]}
    if decision.advance:
        update |= {"status": event.status, "seq": event.seq, "updatedAt": utcnow()}
        if event.status in TERMINAL:
            update |= {"result": event.result, "error": event.error}
    return update


def _forward_only(changes: Fields, session: SessionDoc | None) -> Fields:
    """The changes without a preview older than the one published: two runs' events may land in
    either order, and a page must never go back to an earlier version."""
    new = (changes.get("preview") or {}).get("version")
    current = session.preview.version if session is not None and session.preview else None
    if new is not None and current is not None and new <= current:
        return {key: value for key, value in changes.items() if key != "preview"}
    return changes


def session_update(event: StatusEvent, session: SessionDoc | None) -> Fields:
    """The latest run's status, and what a succeeded action changed (instance, preview)."""
    update: Fields = (
        {"status": event.status, "updatedAt": utcnow()} if session is not None and session.runId == event.runId else {}
    )
    if event.status != "succeeded":
        return update
    if event.session is not None:
        return update | _forward_only(event.session.fields(), session)
    # A job of the previous release sent the changes inside its result: kept through a rolling deploy.
    legacy = (event.result or {}).get("session") or {}
    return update | {key: legacy[key] for key in SESSION_FIELDS_FROM_RESULT if key in legacy}
