"""Sessions and runs in Firestore: sandboxRuns/{sessionId}/runs/{runId}."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, cast

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.cloud import firestore
from google.cloud.firestore_v1.base_aggregation import AggregationResult
from google.cloud.firestore_v1.base_query import FieldFilter

from vibesdk_gcp import access
from vibesdk_gcp.batching import GroupCall
from vibesdk_gcp.errors import NotFound, ServiceUnavailable
from vibesdk_gcp.metrics import work
from vibesdk_gcp.names import RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.schemas import SandboxRequest, StatusEvent, params_digest, utcnow
from vibesdk_gcp.state import SEQ_QUEUED, SEQ_RUNNING, TERMINAL, Decision, decide, insert_transition

MAX_WRITE_ATTEMPTS = 20
# Under load, how long a group of Firestore calls waits to gather more (vibesdk_gcp/batching.py).
GROUP_LINGER_SECONDS = 0.005
# Firestore's TTL policy on expireAt deletes runs this long after they were queued.
RUN_RETENTION = timedelta(days=30)
# What an API request waits for Firestore before it answers 503 instead.
CALL_LIMITS: dict[str, Any] = {"retry": Retry(timeout=10), "timeout": 10}

Document = dict[str, Any]
Snapshots = dict[str, Any]

# Errors that one item of a batch can cause; any other spoils every item alike.
ITEM_ERRORS = (
    api_exceptions.NotFound,
    api_exceptions.AlreadyExists,
    api_exceptions.FailedPrecondition,
    api_exceptions.InvalidArgument,
)

# Session fields a successful action may set through its result's "session" object.
SESSION_FIELDS_FROM_RESULT = ("instanceId", "preview")


def _possible_id(value: str) -> bool:
    """Whether Firestore could hold a document of this id (it refuses the others with 400)."""
    reserved = value.startswith("__") and value.endswith("__")
    return (
        bool(value) and "/" not in value and value not in (".", "..") and not reserved and len(value.encode()) <= 1500
    )


# Firestore failing (or answering too slowly, retries spent): an outage to the caller, 503 or a nack.
OUTAGES = (api_exceptions.GoogleAPICallError, api_exceptions.RetryError)


def _unavailable(error: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"Firestore is unavailable: {error}")


@dataclass(frozen=True)
class Claim:
    session_id: str
    run_id: str
    message_id: str
    attempt: int | None
    lease_seconds: float
    # Leave the run unclaimed ("ordered?") when its session has other unfinished runs, so that
    # the caller can check their order first (functions/ordering.py).
    check_order: bool = True


class RunStore:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._sessions = client.collection(RUNS_COLLECTION)
        # Concurrent POSTs, claims and status events share Firestore calls (vibesdk_gcp/batching.py).
        self._queue_group = GroupCall("queue-runs", self._queue_many, limit=200, linger=GROUP_LINGER_SECONDS)
        self._claim_group: GroupCall[Claim, str] = GroupCall(
            "claim-runs",
            partial(self._read_decide_write, refs_of=self._claim_refs, plan=self._plan_claim),
            limit=200,
            linger=GROUP_LINGER_SECONDS,
        )
        self._apply_group: GroupCall[StatusEvent, Decision] = GroupCall(
            "apply-events",
            partial(self._read_decide_write, refs_of=self._event_refs, plan=self._plan_event),
            limit=200,
            linger=GROUP_LINGER_SECONDS,
        )

    def _session_ref(self, session_id: str) -> firestore.DocumentReference:
        return self._sessions.document(session_id)

    def _run_ref(self, session_id: str, run_id: str) -> firestore.DocumentReference:
        run = self._session_ref(session_id).collection(RUNS_SUBCOLLECTION).document(run_id)
        return cast(firestore.DocumentReference, run)  # DocumentReference.collection is unannotated

    def queue_run(self, request: SandboxRequest, new_session: bool) -> None:
        """Write the queued run and point the session at it (in one batch with other POSTs' runs)."""
        self._queue_group((request, new_session))

    def _queue_many(self, items: list[tuple[SandboxRequest, bool]]) -> list[None | BaseException]:
        batch = self._client.batch()
        for request, new_session in items:
            self._add_queued_run(batch, request, new_session)
        try:
            self._commit(batch)
        except OUTAGES as error:
            if len(items) > 1 and isinstance(error, ITEM_ERRORS):
                # One item's write spoiled the batch (a session gone, say): each alone, so only it fails.
                return [self._queue_many([item])[0] for item in items]
            return [_unavailable(error)] * len(items)
        return [None] * len(items)

    def _add_queued_run(self, batch: firestore.WriteBatch, request: SandboxRequest, new_session: bool) -> None:
        now = utcnow()
        run = {
            "runId": request.runId,
            "sessionId": request.sessionId,
            "owner": request.owner,
            "action": request.action,
            "paramsDigest": params_digest(request.params),
            "status": "queued",
            "seq": SEQ_QUEUED,
            "transitions": [
                {"seq": SEQ_QUEUED, "status": "queued", "at": now, "eventId": None, "deliveryAttempt": None}
            ],
            "result": None,
            "error": None,
            "createdAt": now,
            "updatedAt": now,
            "expireAt": now + RUN_RETENTION,
        }
        # `unfinished` counts the session's queued and running runs (the recorder counts them down):
        # with one, the job needs no query to keep the session's order.
        session: Document = {
            "status": "queued",
            "action": request.action,
            "runId": request.runId,
            "updatedAt": now,
            "unfinished": firestore.Increment(1),
        }
        batch.set(self._run_ref(request.sessionId, request.runId), run)
        if new_session:
            session |= {
                "sessionId": request.sessionId,
                "owner": request.owner,
                "agentId": request.agentId,
                "templateName": request.templateName,
                "projectName": request.projectName,
                "instanceId": None,
                "preview": None,
                "createdAt": now,
            }
            batch.create(self._session_ref(request.sessionId), session)
        else:
            batch.update(self._session_ref(request.sessionId), session)

    def get_session(self, session_id: str) -> Document:
        snapshot = self._get(self._session_ref(session_id)) if _possible_id(session_id) else None
        if snapshot is None:
            raise NotFound(f"session {session_id!r} does not exist")
        return snapshot

    def get_run(self, session_id: str, run_id: str) -> Document:
        possible = _possible_id(session_id) and _possible_id(run_id)
        snapshot = self._get(self._run_ref(session_id, run_id)) if possible else None
        if snapshot is None:
            raise NotFound(f"run {run_id!r} of session {session_id!r} does not exist")
        return snapshot

    def _get(self, ref: firestore.DocumentReference) -> Document | None:
        try:
            snapshot = self._read([ref])[ref.path]
        except OUTAGES as error:
            raise _unavailable(error) from error
        return snapshot.to_dict() if snapshot.exists else None

    def claim(
        self,
        session_id: str,
        run_id: str,
        message_id: str,
        attempt: int | None,
        lease_seconds: float,
        check_order: bool = True,
    ) -> str:
        """Take a run for one delivery: "claimed", "finished", "busy", "unknown" or "ordered?".

        "ordered?": the session has other unfinished runs, so nothing was taken (with check_order).

        A run is executed by one delivery at a time. Another delivery finds it "busy" while the
        holder's lease is live, unless it is a later attempt of the same message (the earlier one
        failed, or Pub/Sub would not have sent it again); once the lease has lapsed anyone may
        take over. The holder renews its lease while it works.
        """
        return self._claim_group(Claim(session_id, run_id, message_id, attempt, lease_seconds, check_order))

    def _claim_refs(self, claim: Claim) -> list[firestore.DocumentReference]:
        # The session too, in the same read: its count of unfinished runs spares most claims a query.
        return [self._run_ref(claim.session_id, claim.run_id), self._session_ref(claim.session_id)]

    def _plan_claim(self, claim: Claim, snapshots: Snapshots, batch: firestore.WriteBatch) -> str:
        ref = self._run_ref(claim.session_id, claim.run_id)
        snapshot = snapshots[ref.path]
        if not snapshot.exists:
            return "unknown"
        run = snapshot.to_dict()
        held = run.get("claim") or {}
        if run["status"] in TERMINAL or held.get("endedAt"):
            return "finished"  # ended by its holder, even before the recorder has written it
        now = utcnow()
        retry_of_holder = held.get("messageId") == claim.message_id and (claim.attempt or 0) > (
            held.get("attempt") or 0
        )
        if held and held["leaseUntil"] > now and not retry_of_holder:
            return "busy"
        session = snapshots[self._session_ref(claim.session_id).path].to_dict() or {}
        if claim.check_order and session.get("unfinished", 2) > 1:
            return "ordered?"
        taken = {
            "messageId": claim.message_id,
            "attempt": claim.attempt,
            "leaseUntil": now + timedelta(seconds=claim.lease_seconds),
        }
        # `claims` counts executions: more than one means a delivery took over a lapsed lease.
        batch.update(ref, {"claim": taken, "claims": firestore.Increment(1)}, option=self._unchanged(snapshot))
        return "claimed"

    def end_claim(self, session_id: str, run_id: str) -> None:
        """The holder has ended the run (its terminal event is out): no delivery takes it again."""
        batch = self._client.batch()
        batch.update(self._run_ref(session_id, run_id), {"claim.endedAt": utcnow()})
        try:
            self._commit(batch)
        except OUTAGES as error:
            raise _unavailable(error) from error

    def release(self, session_id: str, run_id: str) -> None:
        """End the holder's lease now, so that the next delivery takes the run at once."""
        self.renew(session_id, run_id, 0)

    def renew(self, session_id: str, run_id: str, lease_seconds: float) -> None:
        batch = self._client.batch()
        batch.update(
            self._run_ref(session_id, run_id), {"claim.leaseUntil": utcnow() + timedelta(seconds=lease_seconds)}
        )
        try:
            self._commit(batch)
        except OUTAGES as error:
            raise _unavailable(error) from error

    def active_runs(self, owner: str) -> int:
        """The owner's queued and running runs (a count, not a read of each)."""
        query = (
            self._client.collection_group(RUNS_SUBCOLLECTION)
            .where(filter=FieldFilter("owner", "==", owner))
            .where(filter=FieldFilter("status", "in", ["queued", "running"]))
        )
        try:
            # One list of results per response; firestore annotates it as one list of results.
            result = cast(list[list[AggregationResult]], query.count().get(**CALL_LIMITS))
        except OUTAGES as error:
            raise _unavailable(error) from error
        work.add("firestore.reads")
        work.add("firestore.calls")
        access.note(access.FIRESTORE_READ, access.DATABASE)
        return int(result[0][0].value)

    def sessions_of(self, owner: str, limit: int = 100) -> list[Document]:
        query = (
            self._sessions.where(filter=FieldFilter("owner", "==", owner))
            .order_by("updatedAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return self._documents(query)

    def runs_of(self, session_id: str, limit: int = 100) -> list[Document]:
        query = (
            self._session_ref(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .order_by("createdAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return self._documents(query)

    def unfinished_in_session(self, session_id: str) -> list[Document]:
        """The session's queued and running runs: runId, createdAt, status (a few, by design)."""
        query = (
            self._session_ref(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .where(filter=FieldFilter("status", "in", ["queued", "running"]))
            .select(["runId", "createdAt", "status", "claim.endedAt"])
        )
        # A run its holder ended is done, whether or not the recorder has written so yet.
        return [run for run in self._documents(query) if not (run.get("claim") or {}).get("endedAt")]

    def unfinished(self) -> list[Document]:
        """Every queued or running run, for the stale-run sweep."""
        query = self._client.collection_group(RUNS_SUBCOLLECTION).where(
            filter=FieldFilter("status", "in", ["queued", "running"])
        )
        return self._documents(query)

    def _documents(self, query: firestore.Query) -> list[Document]:
        access.note(access.FIRESTORE_READ, access.DATABASE)
        work.add("firestore.reads")
        work.add("firestore.calls")
        try:
            # A query yields only documents that exist: none is None.
            return [cast(Document, snapshot.to_dict()) for snapshot in query.stream(**CALL_LIMITS)]
        except OUTAGES as error:
            raise _unavailable(error) from error

    def fail_queued(self, session_id: str, run_id: str, error: str) -> None:
        """End a run that never left the control plane (its message was not published)."""
        event = StatusEvent(
            eventId=f"control-plane-{run_id}",
            sessionId=session_id,
            runId=run_id,
            seq=2,
            status="failed",
            time=utcnow(),
            error=error,
        )
        self.apply(event)

    def apply(self, event: StatusEvent) -> Decision:
        """Apply one status event to its run and the run's session, atomically.

        No transaction: Firestore's lock documents, and the emulator stalls for seconds
        when a run's running and terminal events meet. Both documents are read in one
        call and written in one batch, each write conditional on the update time that
        was read; a racing writer makes the batch fail, and we read and decide again.
        """
        return self._apply_group(event)

    def _event_refs(self, event: StatusEvent) -> list[firestore.DocumentReference]:
        return [self._run_ref(event.sessionId, event.runId), self._session_ref(event.sessionId)]

    def _plan_event(self, event: StatusEvent, snapshots: Snapshots, batch: firestore.WriteBatch) -> Decision:
        run_ref, session_ref = self._event_refs(event)
        run_snapshot, session_snapshot = snapshots[run_ref.path], snapshots[session_ref.path]
        if not run_snapshot.exists:
            return Decision(False, False, "unknown run")
        run = run_snapshot.to_dict()
        seen = {int(item["seq"]) for item in run["transitions"]}
        decision = decide(run["status"], int(run["seq"]), seen, event.status, event.seq)
        if not decision.record:
            return decision
        batch.update(run_ref, self._run_update(event, run, decision), option=self._unchanged(run_snapshot))
        session_update = self._session_update(event, session_snapshot.to_dict() or {}) if decision.advance else {}
        if decision.advance and event.status in TERMINAL and session_snapshot.exists:
            session_update["unfinished"] = firestore.Increment(-1)
        if session_update:
            batch.update(session_ref, session_update, option=self._unchanged(session_snapshot))
        return decision

    def _read_decide_write(
        self, items: list[Any], refs_of: Callable[[Any], list[Any]], plan: Callable[[Any, Snapshots, Any], Any]
    ) -> list[Any]:
        """Many items' read-decide-write in two calls: one read of all their documents, one batch.

        Every write is conditional on the update time that was read. An item whose documents an
        earlier item of the group also touches goes alone afterwards, and so does every item when
        a racing writer spoils the batch: alone, it reads, decides and writes again until it holds.
        """
        outcomes: list[Any] = [None] * len(items)
        together: list[int] = []
        alone: list[int] = []
        touched: set[str] = set()
        for index, item in enumerate(items):
            paths = {ref.path for ref in refs_of(item)}
            (alone if paths & touched else together).append(index)
            touched |= paths
        try:
            snapshots = self._read([ref for index in together for ref in refs_of(items[index])])
            batch = self._client.batch()
            for index in together:
                outcomes[index] = plan(items[index], snapshots, batch)
            self._commit(batch)
        except (api_exceptions.FailedPrecondition, api_exceptions.Aborted):
            alone = sorted(together + alone)
        except OUTAGES as error:
            return [_unavailable(error)] * len(items)
        except Exception:  # one item could not be planned (a malformed document): nothing was written
            alone = sorted(together + alone)
        for index in alone:
            try:
                outcomes[index] = self._until_it_holds(items[index], refs_of, plan)
            except Exception as error:  # that item's failure, not the group's
                outcomes[index] = error
        return outcomes

    def _until_it_holds(
        self, item: Any, refs_of: Callable[[Any], list[Any]], plan: Callable[[Any, Snapshots, Any], Any]
    ) -> Any:
        refs = refs_of(item)
        try:
            for attempt in range(MAX_WRITE_ATTEMPTS):
                snapshots = self._read(refs)
                batch = self._client.batch()
                outcome = plan(item, snapshots, batch)
                try:
                    self._commit(batch)
                except (api_exceptions.FailedPrecondition, api_exceptions.Aborted):
                    time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                    continue
                return outcome
        except OUTAGES as error:
            raise _unavailable(error) from error
        raise ServiceUnavailable(f"{refs[0].path} kept changing: gave up after {MAX_WRITE_ATTEMPTS} attempts")

    def _read(self, refs: list[firestore.DocumentReference]) -> Snapshots:
        unique = list({ref.path: ref for ref in refs}.values())
        if not unique:
            return {}
        access.note(access.FIRESTORE_READ, access.DATABASE)
        work.add("firestore.reads", len(unique))
        work.add("firestore.calls")
        return {snapshot.reference.path: snapshot for snapshot in self._client.get_all(unique, **CALL_LIMITS)}

    def _commit(self, batch: firestore.WriteBatch) -> None:
        if len(batch):
            access.note(access.FIRESTORE_WRITE, access.DATABASE)
            work.add("firestore.writes", len(batch))
            work.add("firestore.calls")
            batch.commit(**CALL_LIMITS)

    def _unchanged(self, snapshot: Any) -> Any:
        return self._client.write_option(last_update_time=snapshot.update_time)

    @staticmethod
    def _run_update(event: StatusEvent, run: Document, decision: Decision) -> Document:
        transition = {
            "seq": event.seq,
            "status": event.status,
            "at": event.time,
            "eventId": event.eventId,
            "deliveryAttempt": event.deliveryAttempt,
        }
        transitions = insert_transition(run["transitions"], transition)
        seen = {int(item["seq"]) for item in transitions}
        if event.status in TERMINAL and event.startedAt and SEQ_RUNNING not in seen and SEQ_QUEUED in seen:
            # The action was quick: its running transition came inside this terminal event.
            running = transition | {"seq": SEQ_RUNNING, "status": "running", "at": event.startedAt}
            transitions = insert_transition(transitions, running)
        update: Document = {"transitions": transitions}
        if decision.advance:
            update |= {"status": event.status, "seq": event.seq, "updatedAt": utcnow()}
            if event.status in TERMINAL:
                update |= {"result": event.result, "error": event.error}
        return update

    @staticmethod
    def _session_update(event: StatusEvent, session: Document) -> Document:
        """The latest run's status, and what a succeeded action changed (instance, preview)."""
        update: Document = (
            {"status": event.status, "updatedAt": utcnow()} if session.get("runId") == event.runId else {}
        )
        changes = (event.result or {}).get("session") or {}
        if event.status == "succeeded":
            update |= {key: changes[key] for key in SESSION_FIELDS_FROM_RESULT if key in changes}
        return update
