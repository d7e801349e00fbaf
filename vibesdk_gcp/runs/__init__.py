"""Sessions and runs in Firestore: sandboxRuns/{sessionId}/runs/{runId}.

RunStore is what callers use. Its parts do one job each: documents.py (the documents, typed),
calls.py (Firestore calls, counted), engine.py (a group's read-decide-write), queueing.py,
claims.py (claims and leases), queries.py (reads), events.py (status events) and watches.py (waits on listeners).
"""

from __future__ import annotations

from datetime import datetime

from google.cloud import firestore

from vibesdk_gcp.runs.calls import FirestoreCalls
from vibesdk_gcp.runs.claims import Claim, ClaimOutcome, Claims
from vibesdk_gcp.runs.documents import ClaimDoc, RunDoc, SessionDoc, Transition, UnfinishedRun
from vibesdk_gcp.runs.events import StatusEvents
from vibesdk_gcp.runs.queries import Queries
from vibesdk_gcp.runs.queueing import RunQueue
from vibesdk_gcp.runs.watches import Listener, ListenerSlots, Watches
from vibesdk_gcp.schemas import SandboxRequest, StatusEvent
from vibesdk_gcp.state import Decision

__all__ = ["ClaimDoc", "ClaimOutcome", "RunDoc", "RunStore", "SessionDoc", "Transition", "UnfinishedRun"]


class RunStore:
    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self._calls = FirestoreCalls(client)
        self._queue = RunQueue(self._calls)
        self._claims = Claims(self._calls)
        self._queries = Queries(self._calls)
        self._events = StatusEvents(self._calls)
        self._watches = Watches(self._calls)

    # Queueing
    def queue_run(self, request: SandboxRequest, new_session: bool, preview_token: str | None = None) -> None:
        """Write the queued run and point the session at it (in one batch with other POSTs' runs)."""
        self._queue.queue_run(request, new_session, preview_token)

    # Claims and leases (claims.py)
    def claim(
        self,
        session_id: str,
        run_id: str,
        message_id: str,
        attempt: int | None,
        lease_seconds: float,
        check_order: bool = True,
        owner: str | None = None,
        owner_share: int = 0,
        issued_at: datetime | None = None,
    ) -> ClaimOutcome:
        """Take the run for one delivery, unless the check of its session's order comes first
        (check_order), and with it one of its owner's `owner_share` actions over every instance
        (refused for the share, the run waits for one: waiting_for_share)."""
        claim = Claim(
            session_id, run_id, message_id, attempt, lease_seconds, check_order, owner, owner_share, issued_at
        )
        return self._claims.claim(claim)

    def renew(self, session_id: str, run_id: str, lease_seconds: float, owner: str | None = None) -> None:
        self._claims.renew(session_id, run_id, lease_seconds, owner)

    def release(self, session_id: str, run_id: str, owner: str | None = None) -> None:
        """End the holder's lease now, so that the next delivery takes the run at once."""
        self._claims.renew(session_id, run_id, 0, owner)

    def wait_for_share(self, owner: str, session_id: str, run_id: str, issued_at: datetime) -> None:
        """An instance refused the run for its owner's share: the instance that gives one back
        starts it (functions/job.py), as Pub/Sub would only after its backoff."""
        self._claims.wait_for_share(owner, session_id, run_id, issued_at)

    def waiting_for_share(self, owner: str) -> list[tuple[str, str]]:
        """The owner's runs refused for its share, the earliest issued first: (sessionId, runId)."""
        return self._claims.waiting_for_share(owner)

    def stop_waiting(self, owner: str, run_id: str) -> None:
        """The run is no longer written down as waiting for its owner's share (it is being started)."""
        self._claims.stop_waiting(owner, run_id)

    def mark_refused(self, session_id: str, run_id: str) -> None:
        """A delivery of the run was refused for its session's order: Pub/Sub brings it back only
        after its backoff, so the instance that ends the run before it may start it (functions/job.py)."""
        self._claims.mark_refused(session_id, run_id)

    def end_claim(self, session_id: str, run_id: str, owner: str | None = None) -> None:
        """The holder has ended the run (its terminal event is out): no delivery takes it again,
        and its owner's share is given back."""
        self._claims.end_claim(session_id, run_id, owner)

    # Reads (queries.py)
    def get_session(self, session_id: str) -> SessionDoc:
        return self._queries.get_session(session_id)

    def get_run(self, session_id: str, run_id: str) -> RunDoc:
        return self._queries.get_run(session_id, run_id)

    def sessions_of(self, owner: str, limit: int = 100) -> list[SessionDoc]:
        return self._queries.sessions_of(owner, limit)

    def runs_of(self, session_id: str, limit: int = 100) -> list[RunDoc]:
        return self._queries.runs_of(session_id, limit)

    def unfinished_in_session(self, session_id: str) -> list[UnfinishedRun]:
        return self._queries.unfinished_in_session(session_id)

    def queued_request(self, session_id: str, run_id: str) -> SandboxRequest | None:
        return self._queries.queued_request(session_id, run_id)

    def unfinished(self) -> list[RunDoc]:
        return self._queries.unfinished()

    def active_runs(self, owner: str) -> int:
        return self._queries.active_runs(owner)

    # Status events (events.py)
    def apply(self, event: StatusEvent) -> Decision:
        return self._events.apply(event)

    def fail_queued(self, session_id: str, run_id: str, error: str) -> None:
        self._events.fail_queued(session_id, run_id, error)

    # Waits (watches.py): pushed by Firestore's listeners, never polled
    async def until_terminal(self, session_id: str, run_id: str, timeout: float) -> RunDoc | None:
        """The run once it is terminal; None when `timeout` seconds pass first."""
        return await self._watches.until_terminal(session_id, run_id, timeout)

    def session_listener(self, session_id: str, slots: ListenerSlots) -> Listener:
        """`async with` it: the session's document, each time it changes (a listener of `slots`)."""
        return self._watches.session(session_id, slots)

    def session_runs(self, session_id: str, newest: int = 100) -> Listener:
        """`async with` it: the session's `newest` runs, each time one changes."""
        return self._watches.session_runs(session_id, newest)

    # Renames (VibSDK's updateProjectName)
    def rename_session(self, session_id: str, project_name: str) -> None:
        """The session's projectName, changed; its runs and their order are untouched."""
        batch = self._client.batch()
        batch.update(self._calls.session_ref(session_id), {"projectName": project_name})
        self._calls.commit_or_unavailable(batch)
