"""The status recorder's logic: one status event applied to its run and session (vibesdk_gcp/runs/events.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from functions.context import Context
from vibesdk_gcp import logs
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.errors import PoisonMessage
from vibesdk_gcp.names import STATUS_TOPIC
from vibesdk_gcp.schemas import StatusEvent
from vibesdk_gcp.state import Decision

logger = logging.getLogger("functions.recorder")


@dataclass(frozen=True)
class Outcome:
    decision: Decision | None = None
    error: str | None = None


def record(message: PubsubMessage, ctx: Context) -> Outcome:
    try:
        event: StatusEvent = message.parse(StatusEvent)
    except PoisonMessage as error:
        # Retrying cannot help: set it aside, with why, and acknowledge.
        logger.error("malformed status event %s dead-lettered: %s", message.message_id, error)
        ctx.bus.dead_letter(message, STATUS_TOPIC, str(error))
        return Outcome(error=str(error))
    with logs.log_context(
        traceId=message.attributes.get(logs.TRACE_ATTRIBUTE), sessionId=event.sessionId, runId=event.runId
    ):
        decision = ctx.store.apply(event)
        logger.info("%s (seq %d): %s", event.status, event.seq, decision.reason)
    return Outcome(decision=decision)
