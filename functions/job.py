"""The sandbox job's logic: one request message, one action, its status events."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import threading
import time
import uuid
from typing import Any, NamedTuple

from functions.actions import perform
from functions.context import Context
from vibesdk_gcp import logs
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.errors import (
    ActionFailed,
    Busy,
    Conflict,
    NotFound,
    PoisonMessage,
    ServiceUnavailable,
    exhausted,
)
from vibesdk_gcp.names import LOGS_BUCKET, REQUESTS_TOPIC
from vibesdk_gcp.runs import ClaimOutcome
from vibesdk_gcp.schemas import RunStatus, SandboxRequest, SessionChanges, StatusEvent, utcnow
from vibesdk_gcp.state import SEQ_RUNNING, SEQ_TERMINAL

logger = logging.getLogger("functions.job")

RUNNING_AFTER_SECONDS = 0.25

# How long one delivery goes on running, after its own, the session's later actions
# (functions/ordering.py) and the owner's refused for its share (functions/fairness.py).
CHAIN_BUDGET_SECONDS = 60.0

# A Firestore document is at most 1 MiB: a bigger result goes to Cloud Storage.
MAX_INLINE_RESULT_BYTES = 256 * 1024


def _bounded(ctx: Context, request: SandboxRequest, result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    encoded = json.dumps(result, default=str).encode()
    if len(encoded) <= MAX_INLINE_RESULT_BYTES:
        return result
    name = f"{request.sessionId}/results/{request.runId}.json"
    ctx.storage.write(LOGS_BUCKET, name, encoded, "application/json")
    return {"resultObject": f"gs://{LOGS_BUCKET}/{name}", "resultBytes": len(encoded), "keys": sorted(result)}


class Lease:
    """Keeps the run's claim alive while the action works, so a crash shows as a lapsed lease."""

    def __init__(self, ctx: Context, request: SandboxRequest) -> None:
        self._stop = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._renew, ctx, request), daemon=True)
        self._thread.start()

    def _renew(self, ctx: Context, request: SandboxRequest) -> None:
        lease, run_id = ctx.settings.lease_seconds, request.runId
        while not self._stop.wait(lease / 3):
            try:
                # The owner's share of the workers is held as long as the run (functions/fairness.py).
                ctx.store.renew(request.sessionId, run_id, lease, request.owner)
            except ServiceUnavailable as error:
                logger.warning("run %s: lease not renewed (%s)", run_id, error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Progress:
    """Publishes one run's status events.

    `running` goes out only when the action outlasts RUNNING_AFTER_SECONDS; a quicker
    action's terminal event carries its start time instead, and the recorder records
    both transitions from it. Either way the run shows queued -> running -> terminal,
    and a quick run costs one status message instead of two.
    """

    def __init__(
        self,
        ctx: Context,
        session_id: str,
        run_id: str,
        attempt: int | None,
        claimed: bool = False,
        owner: str | None = None,
    ) -> None:
        self._ctx, self._session_id, self._run_id, self._attempt = ctx, session_id, run_id, attempt
        self._claimed, self._owner = claimed, owner
        self.started_at = utcnow()
        self._lock = threading.Lock()
        self._finished = False
        # contextvars do not follow a new thread by themselves: the log context goes along.
        self._timer = threading.Timer(RUNNING_AFTER_SECONDS, contextvars.copy_context().run, args=(self._running,))
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def _running(self) -> None:
        with self._lock:
            if self._finished:
                return
            try:
                self._publish(SEQ_RUNNING, "running")
            except ServiceUnavailable as error:
                logger.warning("run %s: running not published (%s); the terminal event carries it", self._run_id, error)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._finished = True

    def finish(
        self,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        session: SessionChanges | None = None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._finished = True
        self._publish(SEQ_TERMINAL, status, result, error, session)
        if self._claimed:
            # The run's status is the recorder's to write; while the recorder is down, a later
            # delivery must still find this run done, not a lapsed lease to take over and run again.
            try:
                self._ctx.store.end_claim(self._session_id, self._run_id, self._owner)
            except (ServiceUnavailable, NotFound) as failure:
                logger.warning("run %s: its claim was not marked ended (%s)", self._run_id, failure)

    def _publish(
        self,
        seq: int,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        session: SessionChanges | None = None,
    ) -> None:
        event = StatusEvent(
            eventId=str(uuid.uuid4()),
            sessionId=self._session_id,
            runId=self._run_id,
            seq=seq,
            status=status,
            time=self.started_at if seq == SEQ_RUNNING else utcnow(),
            deliveryAttempt=self._attempt,
            startedAt=self.started_at,
            result=result,
            error=error,
            session=session,
        )
        self._ctx.bus.publish_status(event)


class Ended(NamedTuple):
    """A run that ended here: its session's next may start, and its owner's share is free again."""

    session_id: str
    owner: str | None  # None: a poison message's run, which held no share


def handle_request(message: PubsubMessage, ctx: Context) -> None:
    """Run one request, then the session's later ones: those this process holds, then the next
    one queued, from Firestore (functions/ordering.py), wherever its delivery went; and then the
    owner's earliest run refused for its share, which this run's end gave back.

    A request that can never run is dead-lettered (and its run failed); one whose session has an
    earlier action still unfinished, or whose owner runs its share already, raises Busy: a
    negative ack.
    """
    started = time.monotonic()
    ended = _handle_in_context(message, ctx)
    tried: set[str] = set()
    while ended and time.monotonic() - started < CHAIN_BUDGET_SECONDS:
        ended = _next_in_session(ctx, ended.session_id, tried) or _next_of_owner(ctx, ended.owner, tried)


def _next_in_session(ctx: Context, session_id: str, tried: set[str]) -> Ended | None:
    """The session's held requests run, else its next queued one: the last that ended."""
    last = None
    for held in ctx.order.take_held(session_id):
        try:
            last = _handle_in_context(held, ctx) or last
        except Exception as error:  # its own redelivery retries it; this delivery is done
            logger.info("held request %s left to its redelivery: %s", held.message_id, error)
    if last:
        return last
    return _start(ctx, _next_queued(ctx, session_id, tried))


def _next_of_owner(ctx: Context, owner: str | None, tried: set[str]) -> Ended | None:
    """The owner's earliest run refused for its share, started here (whichever instance its
    delivery reached) now that this one gave a share back; Pub/Sub's backoff would hold it up
    to 600 s, and the emulator stops bringing it back after two or three refusals (docs/OPERATIONS.md)."""
    if owner is None:
        return None
    try:
        waiting = [(s, r) for s, r in ctx.store.waiting_for_share(owner) if r not in tried]
        if not waiting:
            return None
        session_id, run_id = waiting[0]
        tried.add(run_id)
        ctx.store.stop_waiting(owner, run_id)  # refused again, its claim writes it down again
        request = ctx.store.queued_request(session_id, run_id)
    except (ServiceUnavailable, ValueError) as error:
        logger.warning("owner %s: its waiting run was not read (%s)", owner, error)
        return None
    return _start(ctx, None if request is None else _chained(request))


def _start(ctx: Context, message: PubsubMessage | None) -> Ended | None:
    """A run started from its Firestore copy, the Ended it left; None when it did not run here."""
    if message is None:
        return None
    try:
        return _handle_in_context(message, ctx)
    except Exception as error:  # its delivery runs it, here or on another instance
        logger.info("queued run %s left to its delivery: %s", message.attributes.get("runId"), error)
        return None


# The message id a run started from its Firestore copy is claimed under (its delivery's differs).
CHAINED_MESSAGE_PREFIX = "chained-"


def _next_queued(ctx: Context, session_id: str, tried: set[str]) -> PubsubMessage | None:
    """The session's next run, as a message, when it is queued, no delivery holds it, one was
    refused for the order (it waits for Pub/Sub's backoff, perhaps on another instance) and
    Firestore keeps its request."""
    try:
        unfinished = ctx.store.unfinished_in_session(session_id)
    except ServiceUnavailable:
        return None
    pending = [run for run in unfinished if run.runId not in tried and not ctx.order.has_ended(run.runId)]
    if not pending:
        return None
    oldest = min(pending, key=lambda run: (run.createdAt, run.runId))
    if oldest.claimed or oldest.refusedAt is None:
        return None  # a delivery runs it, here or elsewhere, or is on its way to
    tried.add(oldest.runId)
    try:
        request = ctx.store.queued_request(session_id, oldest.runId)
    except (ServiceUnavailable, ValueError) as error:
        logger.warning("run %s: its queued request was not read (%s)", oldest.runId, error)
        return None
    if request is None:
        return None
    return _chained(request)


def _chained(request: SandboxRequest) -> PubsubMessage:
    data = request.model_dump_json().encode()
    return PubsubMessage(data=data, message_id=CHAINED_MESSAGE_PREFIX + request.runId, attributes=request.attributes())


def _handle_in_context(message: PubsubMessage, ctx: Context) -> Ended | None:
    attributes = message.attributes
    with logs.log_context(
        traceId=attributes.get(logs.TRACE_ATTRIBUTE),
        sessionId=attributes.get("sessionId"),
        runId=attributes.get("runId"),
    ):
        return _handle(message, ctx)


def _handle(message: PubsubMessage, ctx: Context) -> Ended | None:
    """Handle one request; its run once ended (None when there is none)."""
    try:
        request: SandboxRequest = message.parse(SandboxRequest)
    except PoisonMessage as error:
        session_id, run_id = message.attributes.get("sessionId"), message.attributes.get("runId")
        ctx.bus.dead_letter(message, REQUESTS_TOPIC, str(error))
        if not (session_id and run_id):
            logger.error("request %s dead-lettered: %s", message.message_id, error)
            return None
        logger.error("run %s/%s refused and dead-lettered: %s", session_id, run_id, error)
        Progress(ctx, session_id, run_id, message.delivery_attempt).finish("failed", error=str(error))
        ctx.order.ended(run_id)
        return Ended(session_id, None)
    waits = functools.partial(
        ctx.store.wait_for_share, request.owner, request.sessionId, request.runId, request.issuedAt
    )
    try:
        with ctx.slots.take(request.owner, refused=waits), ctx.local_copies.in_use(request.sessionId):
            _run(request, message, ctx)
    finally:
        # Whatever the run's end, a retry included: a disk that filled up is trimmed.
        ctx.local_copies.trim(ctx.settings.max_local_workspaces)
    ctx.order.ended(request.runId)
    return Ended(request.sessionId, request.owner)


def _claim(request: SandboxRequest, message: PubsubMessage, ctx: Context) -> ClaimOutcome:
    """Claim the run, unless an action of its session queued before it has not ended (then Busy)."""
    claim = functools.partial(
        ctx.store.claim,
        request.sessionId,
        request.runId,
        message.message_id,
        message.delivery_attempt,
        ctx.settings.lease_seconds,
        owner=request.owner,
        owner_share=ctx.slots.share,
        issued_at=request.issuedAt,
    )
    state = claim()
    if state is not ClaimOutcome.CHECK_ORDER:
        return state
    # Other runs of the session are unfinished: the one query that tells whether any came first.
    waiting = ctx.order.waiting_for(request.runId, ctx.store.unfinished_in_session(request.sessionId))
    if waiting:
        ctx.order.hold(request.sessionId, request.runId, message)
        # Said in Firestore, so the instance that ends the earlier run starts this one; looked at
        # again after, for an earlier run that ended before it could see that.
        with contextlib.suppress(ServiceUnavailable, NotFound):
            ctx.store.mark_refused(request.sessionId, request.runId)
        waiting = ctx.order.waiting_for(request.runId, ctx.store.unfinished_in_session(request.sessionId))
    if waiting:
        raise Busy(f"run {request.runId} waits for run {waiting[0]} of its session, queued before it")
    return claim(check_order=False)


def _run(request: SandboxRequest, message: PubsubMessage, ctx: Context) -> None:
    state = _claim(request, message, ctx)
    if state is ClaimOutcome.UNKNOWN:
        # The control plane writes the run before it publishes, so this message is not ours.
        logger.error("message %s names run %s, which does not exist", message.message_id, request.runId)
        return
    if state is ClaimOutcome.FINISHED:
        logger.info("run %s already finished: duplicate delivery acknowledged", request.runId)
        return
    if state is ClaimOutcome.BUSY:
        raise Busy(f"run {request.runId} is being executed by another delivery")
    if state is ClaimOutcome.OWNER_BUSY:
        raise Busy(
            f"owner {request.owner} already runs {ctx.slots.share} actions over the job's instances (its share); "
            "this one waits"
        )

    logger.info("%s started (delivery attempt %s)", request.action, message.delivery_attempt)
    progress = Progress(
        ctx, request.sessionId, request.runId, message.delivery_attempt, claimed=True, owner=request.owner
    )
    progress.start()
    lease = Lease(ctx, request)
    try:
        outcome = perform(request, ctx)
    except Exception as error:
        if shortage := exhausted(error):
            # The job ran short of descriptors, processes or disk, perhaps through another
            # owner's load: no fault of this run's. Given back, and Pub/Sub brings it again.
            progress.cancel()
            ctx.store.release(request.sessionId, request.runId, request.owner)
            logger.warning("%s given back for a retry: the job is out of a resource (%s)", request.action, shortage)
            raise Busy(f"run {request.runId}: the job is out of a resource ({shortage.strerror}); retried") from None
        _fail(request, ctx, progress, error)
        return
    except BaseException:
        progress.cancel()
        raise
    finally:
        lease.stop()
    logger.info("%s succeeded", request.action)
    result = outcome.result
    if outcome.session is not None:
        # Also where the previous release's clients and recorder read them (a rolling deploy); the
        # event's own field is what this release's recorder applies, and it is never spilled.
        result = result | {"session": outcome.session.fields()}
    progress.finish("succeeded", _bounded(ctx, request, result), session=outcome.session)


def _fail(request: SandboxRequest, ctx: Context, progress: Progress, error: Exception) -> None:
    """End the run as its error says: failed, or given back for a retry."""
    if isinstance(error, ActionFailed):
        logger.info("%s failed: %s", request.action, error)
        progress.finish("failed", _bounded(ctx, request, error.result), str(error))
    elif isinstance(error, Conflict):
        # Another action of the session saved first (Eventarc does not order deliveries): nothing
        # of this attempt was kept, so give the run back and let Pub/Sub bring it again.
        progress.cancel()
        ctx.store.release(request.sessionId, request.runId, request.owner)
        logger.warning("%s retried on the newer workspace: %s", request.action, error)
        raise Busy(f"run {request.runId}: {error}") from None
    elif isinstance(error, ServiceUnavailable):
        # Google did not answer: a negative ack, and Pub/Sub tries again.
        progress.cancel()
        raise error
    else:
        # A defect of ours, not a passing outage: redelivering would fail the same way for ever
        # (Eventarc's subscription has no dead-letter topic). The run ends failed, saying so.
        logger.error("%s failed on an internal error", request.action, exc_info=error)
        progress.finish("failed", error=f"internal error ({type(error).__name__}); the run was not retried")
