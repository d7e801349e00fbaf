"""The documents, typed: sessions (sandboxRuns/{sessionId}) and runs (.../runs/{runId}).

They read what any release wrote: a field added since the first one has a default, and a field
this code does not know is ignored. What is written stays the same fields and types
(../shared/DESIGN.md, "Firestore"): timestamps as datetimes, counters as Increment sentinels.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.cloud import firestore
from pydantic import BaseModel, ConfigDict

from vibesdk_gcp.schemas import PublishedPreview, RunStatus, SandboxRequest, params_digest
from vibesdk_gcp.state import SEQ_QUEUED

# Firestore's TTL policy on expireAt deletes runs this long after they were queued.
RUN_RETENTION = timedelta(days=30)
# A request bigger than this is not copied to Firestore (a document holds 1 MiB): its delivery runs it.
MAX_STORED_REQUEST_BYTES = 64 << 10

# A write's fields as Firestore takes them: values, datetimes, sentinels, dotted paths.
Fields = dict[str, Any]


class Document(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def fields(self) -> Fields:
        """The fields this document was given, as Firestore stores them (datetimes stay datetimes)."""
        return self.model_dump(exclude_unset=True)


class WaitingRun(Document):
    sessionId: str
    issuedAt: datetime


class OwnerShareDoc(Document):
    """ownerShares/{owner id}: the runs an owner runs now on any job instance, each until its lease
    lapses, and those refused for the share, which the instance that gives one back starts
    (claims.py; functions/fairness.py)."""

    owner: str
    holders: dict[str, datetime] = {}
    waiting: dict[str, WaitingRun] = {}


class Transition(Document):
    seq: int
    status: RunStatus
    at: datetime
    eventId: str | None = None
    deliveryAttempt: int | None = None


class ClaimDoc(Document):
    """Which delivery executes the run, and until when (claims.py)."""

    messageId: str
    attempt: int | None = None
    leaseUntil: datetime
    # Set by the holder once its terminal event is out: no delivery takes the run again.
    endedAt: datetime | None = None


class RunDoc(Document):
    runId: str
    sessionId: str
    owner: str | None = None
    # Any name: a newer control plane's action must not make this release's reads fail.
    action: str
    paramsDigest: str
    status: RunStatus
    seq: int
    transitions: list[Transition]
    result: dict[str, Any] | None = None
    error: str | None = None
    createdAt: datetime
    updatedAt: datetime
    expireAt: datetime | None = None
    claim: ClaimDoc | None = None
    # Executions: more than one means a delivery took over a lapsed lease.
    claims: int = 0


class SessionDoc(Document):
    sessionId: str
    owner: str
    agentId: str | None = None
    templateName: str | None = None
    projectName: str | None = None
    # Of the session's latest run:
    status: RunStatus
    action: str
    runId: str
    instanceId: str | None = None
    preview: PublishedPreview | None = None
    # The preview's token, made with the session so its URL is known before anything is deployed;
    # None on sessions older than host previews (vibesdk_gcp/previews.py).
    previewToken: str | None = None
    createdAt: datetime
    updatedAt: datetime
    # Its queued and running runs; None on sessions older than the count, which claims treat as many.
    unfinished: int | None = None


class UnfinishedRun(Document):
    """A queued or running run, as the job reads its session's to keep their order."""

    runId: str
    createdAt: datetime
    status: RunStatus
    action: str = ""
    # A delivery holds it (it may have started, whatever its status says yet).
    claimed: bool = False
    # A delivery of it was refused for the session's order: it waits for Pub/Sub's backoff.
    refusedAt: datetime | None = None


def queued_run(request: SandboxRequest, now: datetime) -> RunDoc:
    return RunDoc(
        runId=request.runId,
        sessionId=request.sessionId,
        owner=request.owner,
        action=request.action,
        paramsDigest=params_digest(request.params),
        status="queued",
        seq=SEQ_QUEUED,
        transitions=[Transition(seq=SEQ_QUEUED, status="queued", at=now, eventId=None, deliveryAttempt=None)],
        result=None,
        error=None,
        createdAt=now,
        updatedAt=now,
        expireAt=now + RUN_RETENTION,
    )


def stored_request(request: SandboxRequest, now: datetime) -> Fields | None:
    """The queued run's request as its run's neighbour keeps it (None when too big to keep)."""
    encoded = request.model_dump_json()
    if len(encoded) > MAX_STORED_REQUEST_BYTES:
        return None
    return {"request": encoded, "expireAt": now + RUN_RETENTION}


def queued_session(request: SandboxRequest, now: datetime, new: bool, preview_token: str | None = None) -> Fields:
    """The session's fields as its queued run sets them: all of them for a new session."""
    # `unfinished` counts the session's queued and running runs (the recorder counts them down):
    # with it, the job needs no query to keep the session's order.
    count: Fields = {"unfinished": firestore.Increment(1)}
    latest: Fields = {"status": "queued", "action": request.action, "runId": request.runId, "updatedAt": now}
    if not new:
        return latest | count
    session = SessionDoc(
        sessionId=request.sessionId,
        owner=request.owner,
        agentId=request.agentId,
        templateName=request.templateName,
        projectName=request.projectName,
        status="queued",
        action=request.action,
        runId=request.runId,
        instanceId=None,
        preview=None,
        createdAt=now,
        updatedAt=now,
    )
    # Written only when made: a session queued without one keeps the fields it always had.
    token: Fields = {"previewToken": preview_token} if preview_token else {}
    return session.fields() | token | count


def insert_transition(transitions: list[Transition], transition: Transition) -> list[Transition]:
    return sorted([*transitions, transition], key=lambda item: item.seq)
