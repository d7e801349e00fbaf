"""Requests delivered as Eventarc's own subscription delivers them: unordered, duplicated, cut at 10 s."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import Harness

pytestmark = pytest.mark.e2e


def job_log(harness: Harness) -> str:
    return (Path(harness.stack.supervisor.log_dir) / "sandbox-job.log").read_text()


def test_shuffled_and_duplicated_actions_run_once_in_queued_order(harness: Harness) -> None:
    session = harness.session()
    requests = [
        harness.request(session, "executeCommands", {"commands": [f"echo {index} >> ledger.txt"]})
        for index in range(20)
    ]
    # Each published twice, all at once: the router's shuffle mixes both copies of all twenty.
    for copy in range(2):
        for request in reversed(requests) if copy else requests:
            harness.bus.publish_request(request)

    runs = [harness.wait_run(session, request.runId, timeout=120) for request in requests]

    assert [run["status"] for run in runs] == ["succeeded"] * 20, [run.get("error") for run in runs]
    assert [run.get("claims") for run in runs] == [1] * 20
    assert harness.ledger(session) == [str(index) for index in range(20)]
    started = [next(t["at"] for t in run["transitions"] if t["status"] == "running") for run in runs]
    assert started == sorted(started)


def test_action_past_the_ack_deadline_is_delivered_again_and_runs_once(harness: Harness) -> None:
    session = harness.session()
    request = harness.request(session, "executeCommands", {"commands": ["sleep 30", "echo done >> ledger.txt"]})
    harness.bus.publish_request(request)

    run = harness.wait_run(session, request.runId, timeout=120)

    assert run["status"] == "succeeded", run.get("error")
    assert run["claims"] == 1
    assert job_log(harness).count(f"run {request.runId} is being executed by another delivery") >= 1
    assert harness.ledger(session) == ["done"]
