"""Claims and leases: which delivery executes a run.

A run is executed by one delivery at a time. Another delivery finds it busy while the holder's
lease is live, unless it is a later attempt of the same message (the earlier one failed, or
Pub/Sub would not have sent it again); once the lease has lapsed anyone may take over. The
holder renews its lease while it works, and marks the claim ended once its terminal event is out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from google.cloud import firestore

from vibesdk_gcp.batching import GroupCall
from vibesdk_gcp.runs.calls import GROUP_LINGER_SECONDS, OUTAGES, FirestoreCalls, Snapshot, Snapshots, unavailable
from vibesdk_gcp.runs.documents import ClaimDoc, OwnerShareDoc, RunDoc, SessionDoc, WaitingRun
from vibesdk_gcp.runs.engine import ReadDecideWrite, Shared
from vibesdk_gcp.schemas import utcnow
from vibesdk_gcp.state import TERMINAL


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # this delivery executes the run
    FINISHED = "finished"  # the run has ended, or its holder has: a duplicate delivery
    BUSY = "busy"  # another delivery holds a live lease
    OWNER_BUSY = "owner busy"  # the owner already runs its share of actions, on any instance
    UNKNOWN = "unknown"  # no such run
    # Nothing taken: the session has other unfinished runs, whose order the caller checks first
    # (functions/ordering.py) before it claims again without the check.
    CHECK_ORDER = "check order"


@dataclass(frozen=True)
class Claim:
    session_id: str
    run_id: str
    message_id: str
    attempt: int | None
    lease_seconds: float
    check_order: bool = True
    owner: str | None = None
    owner_share: int = 0  # 0: no share counted
    issued_at: datetime | None = None  # the request's: where it waits among the owner's refused runs


class Claims:
    def __init__(self, calls: FirestoreCalls) -> None:
        self._calls = calls
        # Concurrent claims share Firestore calls (vibesdk_gcp/batching.py).
        self._group = GroupCall(
            "claim-runs",
            ReadDecideWrite(calls, self._refs, self._plan, self._share_refs),
            limit=200,
            linger=GROUP_LINGER_SECONDS,
        )

    def claim(self, claim: Claim) -> ClaimOutcome:
        return self._group(claim)

    def _refs(self, claim: Claim) -> list[firestore.DocumentReference]:
        # The session too, in the same read: its count of unfinished runs spares most claims a query.
        return [self._calls.run_ref(claim.session_id, claim.run_id), self._calls.session_ref(claim.session_id)]

    def _share_refs(self, claim: Claim) -> list[firestore.DocumentReference]:
        # Shared: one owner's claims of a group are planned together, each counting the others'.
        return [self._calls.owner_share_ref(claim.owner)] if claim.owner and claim.owner_share else []

    def _plan(self, claim: Claim, snapshots: Snapshots, batch: firestore.WriteBatch, shared: Shared) -> ClaimOutcome:
        run_ref, session_ref = self._refs(claim)
        snapshot = snapshots[run_ref.path]
        if not snapshot.exists:
            return ClaimOutcome.UNKNOWN
        run = RunDoc.model_validate(snapshot.to_dict())
        held = run.claim
        if run.status in TERMINAL or (held is not None and held.endedAt):
            return ClaimOutcome.FINISHED  # ended by its holder, even before the recorder has written it
        now = utcnow()
        if held is not None and held.leaseUntil > now and not self._retry_of_holder(claim, held):
            return ClaimOutcome.BUSY
        if claim.check_order and self._unfinished(snapshots[session_ref.path]) > 1:
            return ClaimOutcome.CHECK_ORDER
        taken = ClaimDoc(
            messageId=claim.message_id, attempt=claim.attempt, leaseUntil=now + timedelta(seconds=claim.lease_seconds)
        )
        if not self._take_share(claim, shared, taken.leaseUntil):
            return ClaimOutcome.OWNER_BUSY
        self._calls.update_unchanged(batch, snapshot, {"claim": taken.fields(), "claims": firestore.Increment(1)})
        return ClaimOutcome.CLAIMED

    def _take_share(self, claim: Claim, shared: Shared, until: datetime) -> bool:
        """One of the owner's share, written with the claim; False when every one is held, and
        then the run is written down as waiting for one, in the same conditional write: a share
        given back after it was read fails the write, and one given back after it finds the run
        waiting (functions/job.py starts it).

        A holder whose lease lapsed (its instance died) is dropped here; the run's own earlier
        holding (a redelivery after a failed attempt) is not counted against it.
        """
        refs = self._share_refs(claim)
        if not refs:
            return True
        ref = refs[0]
        now = utcnow()
        document = shared.get(ref)
        share = OwnerShareDoc.model_validate(document) if document else OwnerShareDoc(owner=str(claim.owner))
        live = {run_id: lease for run_id, lease in share.holders.items() if lease > now and run_id != claim.run_id}
        waiting = {run_id: run.fields() for run_id, run in share.waiting.items() if run_id != claim.run_id}
        taken = len(live) < claim.owner_share
        if taken:
            live[claim.run_id] = until
        elif claim.run_id in share.waiting:
            return False  # already written down
        else:
            waiting[claim.run_id] = WaitingRun(sessionId=claim.session_id, issuedAt=claim.issued_at or now).fields()
        shared.set(ref, {"owner": claim.owner, "holders": live, "waiting": waiting})
        return taken

    @staticmethod
    def _retry_of_holder(claim: Claim, held: ClaimDoc) -> bool:
        return held.messageId == claim.message_id and (claim.attempt or 0) > (held.attempt or 0)

    @staticmethod
    def _unfinished(session: Snapshot) -> int:
        # A session without the count (or without a document) may have any number: check.
        document = session.to_dict()
        count = SessionDoc.model_validate(document).unfinished if document else None
        return 2 if count is None else count

    def end_claim(self, session_id: str, run_id: str, owner: str | None = None) -> None:
        batch = self._calls.client.batch()
        batch.update(self._calls.run_ref(session_id, run_id), {"claim.endedAt": utcnow()})
        self._give_share_back(batch, run_id, owner)
        self._calls.commit_or_unavailable(batch)

    def _give_share_back(self, batch: firestore.WriteBatch, run_id: str, owner: str | None) -> None:
        if owner:  # merged, so that an owner's missing document never fails the run's own write
            batch.set(self._calls.owner_share_ref(owner), {"holders": {run_id: firestore.DELETE_FIELD}}, merge=True)

    def wait_for_share(self, owner: str, session_id: str, run_id: str, issued_at: datetime) -> None:
        """The run written down as waiting for its owner's share (an instance refused it itself)."""
        batch = self._calls.client.batch()
        waiting = WaitingRun(sessionId=session_id, issuedAt=issued_at).fields()
        batch.set(self._calls.owner_share_ref(owner), {"owner": owner, "waiting": {run_id: waiting}}, merge=True)
        self._calls.commit_or_unavailable(batch)

    def waiting_for_share(self, owner: str) -> list[tuple[str, str]]:
        """The owner's runs waiting for its share, the earliest issued first: (sessionId, runId)."""
        ref = self._calls.owner_share_ref(owner)
        try:
            document = self._calls.read([ref])[ref.path].to_dict()
        except OUTAGES as error:
            raise unavailable(error) from error
        waiting = OwnerShareDoc.model_validate(document).waiting if document else {}
        ordered = sorted(waiting.items(), key=lambda item: (item[1].issuedAt, item[0]))
        return [(run.sessionId, run_id) for run_id, run in ordered]

    def stop_waiting(self, owner: str, run_id: str) -> None:
        batch = self._calls.client.batch()
        batch.set(self._calls.owner_share_ref(owner), {"waiting": {run_id: firestore.DELETE_FIELD}}, merge=True)
        self._calls.commit_or_unavailable(batch)

    def mark_refused(self, session_id: str, run_id: str) -> None:
        batch = self._calls.client.batch()
        batch.update(self._calls.run_ref(session_id, run_id), {"refusedAt": utcnow()})
        self._calls.commit_or_unavailable(batch)

    def renew(self, session_id: str, run_id: str, lease_seconds: float, owner: str | None = None) -> None:
        """The lease, and the owner's share with it, renewed; with 0 seconds both given back."""
        batch = self._calls.client.batch()
        until = utcnow() + timedelta(seconds=lease_seconds)
        batch.update(self._calls.run_ref(session_id, run_id), {"claim.leaseUntil": until})
        if lease_seconds <= 0:
            self._give_share_back(batch, run_id, owner)
        elif owner:
            batch.set(self._calls.owner_share_ref(owner), {"holders": {run_id: until}}, merge=True)
        self._calls.commit_or_unavailable(batch)
