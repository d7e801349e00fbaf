"""The sandbox job's logic: one request message, one action, its status events."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from functions.actions import perform
from functions.context import Context
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.errors import ActionFailed, NotFound, PoisonMessage
from vibesdk_gcp.names import LOGS_BUCKET
from vibesdk_gcp.schemas import RunStatus, SandboxRequest, StatusEvent, utcnow
from vibesdk_gcp.state import SEQ_RUNNING, SEQ_TERMINAL, TERMINAL

logger = logging.getLogger("functions.job")

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


def _publish(
    ctx: Context,
    session_id: str,
    run_id: str,
    seq: int,
    status: RunStatus,
    attempt: int | None,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    event = StatusEvent(
        eventId=str(uuid.uuid4()), sessionId=session_id, runId=run_id, seq=seq, status=status,
        time=utcnow(), deliveryAttempt=attempt, result=result, error=error,
    )
    ctx.bus.publish_status(event)


def handle_request(message: PubsubMessage, ctx: Context) -> None:
    """Run one request; raises PoisonMessage only when no run can be blamed."""
    try:
        request: SandboxRequest = message.parse(SandboxRequest)
    except PoisonMessage as error:
        session_id, run_id = message.attributes.get("sessionId"), message.attributes.get("runId")
        if not (session_id and run_id):
            raise
        logger.error("run %s/%s refused: %s", session_id, run_id, error)
        _publish(ctx, session_id, run_id, SEQ_TERMINAL, "failed", message.delivery_attempt, error=str(error))
        return
    try:
        run = ctx.store.get_run(request.sessionId, request.runId)
    except NotFound:
        # The control plane writes the run before it publishes, so this message is not ours.
        logger.error("message %s names run %s, which does not exist", message.message_id, request.runId)
        return
    if run["status"] in TERMINAL:
        logger.info("run %s already %s: duplicate delivery acknowledged", request.runId, run["status"])
        return

    attempt = message.delivery_attempt
    _publish(ctx, request.sessionId, request.runId, SEQ_RUNNING, "running", attempt)
    try:
        result = perform(request, ctx)
    except ActionFailed as failure:
        logger.info("run %s %s failed: %s", request.runId, request.action, failure)
        _publish(ctx, request.sessionId, request.runId, SEQ_TERMINAL, "failed", attempt,
                 _bounded(ctx, request, failure.result), str(failure))
        return
    logger.info("run %s %s succeeded", request.runId, request.action)
    _publish(ctx, request.sessionId, request.runId, SEQ_TERMINAL, "succeeded", attempt, _bounded(ctx, request, result))
