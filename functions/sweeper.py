"""The stale-run sweep: ends runs whose job is gone for good.

Rule: a run whose claim lapsed more than the grace period ago (the sandbox job died and Pub/Sub
has had time to redeliver) ends failed with "lease expired"; a queued run nobody claimed within
the queue timeout ends failed with "expired in queue". Runs are ended, not re-queued: a client
sees a true terminal state and may post the action again. Run it from Cloud Scheduler (the
`sweeper` HTTP target) or by hand: `python -m functions.sweeper`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from functions.context import Context
from vibesdk_gcp import logs
from vibesdk_gcp.runs import RunDoc
from vibesdk_gcp.schemas import StatusEvent, utcnow
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.state import SEQ_TERMINAL

logger = logging.getLogger("functions.sweeper")


def stale_reason(run: RunDoc, now: datetime, grace: float, queue_timeout: float) -> str | None:
    if run.claim is not None:
        if run.claim.endedAt:
            return None  # its holder ended it: the terminal event is the recorder's to write
        return "lease expired" if run.claim.leaseUntil < now - timedelta(seconds=grace) else None
    if run.status == "queued" and run.createdAt < now - timedelta(seconds=queue_timeout):
        return "expired in queue"
    return None


def sweep(
    ctx: Context,
    now: datetime | None = None,
    grace: float | None = None,
    queue_timeout: float | None = None,
) -> list[tuple[str, str]]:
    """End every stale run; returns (runId, reason) for each one ended (by default by the settings' bounds)."""
    now = now or utcnow()
    grace = ctx.settings.sweep_grace_seconds if grace is None else grace
    queue_timeout = ctx.settings.queue_timeout_seconds if queue_timeout is None else queue_timeout
    ended: list[tuple[str, str]] = []
    for run in ctx.store.unfinished():
        reason = stale_reason(run, now, grace, queue_timeout)
        if reason is None:
            continue
        event = StatusEvent(
            eventId=f"sweeper-{run.runId}",
            sessionId=run.sessionId,
            runId=run.runId,
            seq=SEQ_TERMINAL,
            status="failed",
            time=now,
            error=reason,
        )
        if ctx.store.apply(event).advance:
            logger.warning("run %s/%s ended: %s", run.sessionId, run.runId, reason)
            ended.append((run.runId, reason))
    return ended


def main() -> None:
    settings = Settings.from_env()
    logs.setup(settings.log_name("sweeper"), settings)
    for run_id, reason in sweep(Context.from_settings(settings)):
        print(f"{run_id}: {reason}")


if __name__ == "__main__":
    main()
