"""Queueing a run: the run written queued and its session pointed at it, many POSTs to a batch."""

from __future__ import annotations

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore

from vibesdk_gcp.batching import GroupCall
from vibesdk_gcp.runs.calls import GROUP_LINGER_SECONDS, OUTAGES, FirestoreCalls, unavailable
from vibesdk_gcp.runs.documents import queued_run, queued_session, stored_request
from vibesdk_gcp.schemas import SandboxRequest, utcnow

# Errors that one item of a batch can cause; any other spoils every item alike.
ITEM_ERRORS = (
    api_exceptions.NotFound,
    api_exceptions.AlreadyExists,
    api_exceptions.FailedPrecondition,
    api_exceptions.InvalidArgument,
)


class RunQueue:
    def __init__(self, calls: FirestoreCalls) -> None:
        self._calls = calls
        # Concurrent POSTs share Firestore calls (vibesdk_gcp/batching.py).
        self.group = GroupCall("queue-runs", self._queue_many, limit=200, linger=GROUP_LINGER_SECONDS)

    def queue_run(self, request: SandboxRequest, new_session: bool, preview_token: str | None = None) -> None:
        self.group((request, new_session, preview_token))

    def _queue_many(self, items: list[tuple[SandboxRequest, bool, str | None]]) -> list[None | BaseException]:
        batch = self._calls.client.batch()
        for request, new_session, preview_token in items:
            self.add(batch, request, new_session, preview_token)
        try:
            self._calls.commit(batch)
        except OUTAGES as error:
            if len(items) > 1 and isinstance(error, ITEM_ERRORS):
                # One item's write spoiled the batch (a session gone, say): each alone, so only it fails.
                return [self._queue_many([item])[0] for item in items]
            failure: BaseException = unavailable(error)
            return [failure] * len(items)
        return [None for _ in items]

    def add(
        self, batch: firestore.WriteBatch, request: SandboxRequest, new_session: bool, preview_token: str | None = None
    ) -> None:
        """Add one queued run's writes to the batch (a new session's with its preview token)."""
        now = utcnow()
        batch.set(self._calls.run_ref(request.sessionId, request.runId), queued_run(request, now).fields())
        if (stored := stored_request(request, now)) is not None:
            batch.set(self._calls.request_ref(request.sessionId, request.runId), stored)
        session_ref = self._calls.session_ref(request.sessionId)
        session = queued_session(request, now, new=new_session, preview_token=preview_token)
        if new_session:
            batch.create(session_ref, session)
        else:
            batch.update(session_ref, session)
