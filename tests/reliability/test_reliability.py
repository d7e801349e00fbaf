"""The reliability scenarios at a small size; `make reliability` runs them full-size."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from google.cloud.firestore_v1.base_query import FieldFilter

from tests.reliability import scenarios
from tests.reliability.harness import COLUMNS, Harness, Row, cells
from vibesdk_gcp.schemas import SandboxRequest, utcnow

pytestmark = pytest.mark.e2e

SMALL: dict[str, Callable[[Harness], Row]] = {
    "duplicates": lambda h: scenarios.duplicates(h, 3),
    "reordering": lambda h: scenarios.reordering(h, 5),
    "job_killed": lambda h: scenarios.job_killed(h, 2),
    "lease_expired": lambda h: scenarios.lease_expired(h, 2),
    "recorder_down": lambda h: scenarios.recorder_down(h, 3, 10),
    "services_unavailable": lambda h: scenarios.services_unavailable(h, 1),
    "poison": lambda h: scenarios.poison(h, 3),
    "graceful_shutdown": lambda h: scenarios.graceful_shutdown(h, 1),
    "load": lambda h: scenarios.load(h, 100, 20),
    "fuzz": lambda h: scenarios.fuzz(h, 20),
}


@pytest.mark.parametrize("scenario", list(SMALL))
def test_scenario(harness: Harness, scenario: str) -> None:
    row = SMALL[scenario](harness)
    print(row)
    # Every run judged against the scenario's promise: none lost, duplicated, stuck or off its promise.
    assert row.runs > 0, row
    assert (row.lost, row.duplicated, row.stuck, row.broken) == (0, 0, 0, 0), row
    assert row.result == "pass", row


def test_a_different_fault_makes_a_different_row(harness: Harness) -> None:
    """The row is what the stack did: sweep with a queue timeout no run has reached, and the runs
    nobody claimed are not ended: the same scenario's row shows them lost and stuck."""
    swept = scenarios.lease_expired(harness, 1)
    unswept = scenarios.lease_expired(harness, 1, queue_timeout=3600)
    print(swept, unswept, sep="\n")
    assert swept.result == "pass", swept
    assert (unswept.lost, unswept.stuck, unswept.result) == (1, 1, "FAIL"), unswept
    for column, before, after in zip(COLUMNS, cells(swept), cells(unswept), strict=True):
        if column not in ("scenario", "runs", "duplicated", "broken promise"):
            assert before != after, f"{column}: {before!r} whatever the fault"
    for verdict in unswept.verdicts:  # what the fault left queued, ended so that it holds up nothing
        if verdict.stuck:
            runs = harness.store._client.collection_group("runs")
            run = next(runs.where(filter=FieldFilter("runId", "==", verdict.name)).stream())
            harness.store.fail_queued(run.get("sessionId"), verdict.name, "ended by the test")


# --- fairness: last, since the flood it makes outlives it

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
    # The flood is slowed, not lost: none of it failed (the rest finishes as the stack winds down;
    # this test comes last for that reason).
    assert [harness.run(r.sessionId, r.runId)["status"] for r in flood].count("failed") == 0
