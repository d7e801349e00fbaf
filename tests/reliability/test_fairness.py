"""One owner flooding the job cannot make another owner's action wait behind it."""

from __future__ import annotations

import time

import pytest

from tests.reliability.harness import Harness
from vibesdk_gcp.schemas import SandboxRequest, utcnow

pytestmark = pytest.mark.e2e

FLOOD = 12  # more long actions than the job has workers (THREADS: 4 per core)
# The flood's extra actions are refused at once, so the victim waits for the push loop, not for the
# flood: about one ack deadline (10 s) and a backoff (measured 18 s; 58 s before, growing with the flood).
VICTIM_BOUND_SECONDS = 30.0


def as_owner(harness: Harness, session: str, owner: str, commands: list[str]) -> SandboxRequest:
    request = SandboxRequest(
        sessionId=session,
        runId=f"{owner}-{time.monotonic_ns()}",
        action="executeCommands",
        params={"commands": commands},
        issuedAt=utcnow(),
        owner=owner,
    )
    harness.store.queue_run(request, new_session=False)
    harness.bus.publish_request(request)
    return request


def test_a_flooding_owner_leaves_room_for_another(harness: Harness) -> None:
    sessions = [harness.session() for _ in range(FLOOD + 1)]
    flood = [as_owner(harness, session, "mallory", ["sleep 25"]) for session in sessions[:FLOOD]]
    time.sleep(2)  # the flood holds what it can of the job
    started = time.monotonic()
    victim = as_owner(harness, sessions[-1], "victim", ["true"])
    run = harness.wait_run(sessions[-1], victim.runId, timeout=120)
    waited = time.monotonic() - started
    print(f"victim's run ended {waited:.1f} s after it was queued, behind {FLOOD} of mallory's 25 s actions")
    assert run["status"] == "succeeded" and waited < VICTIM_BOUND_SECONDS
    finals = [harness.wait_run(request.sessionId, request.runId, timeout=240) for request in flood]
    assert [r["status"] for r in finals] == ["succeeded"] * FLOOD  # the flood is slowed, not lost
