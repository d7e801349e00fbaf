"""Requests delivered as Eventarc's own subscription delivers them: unordered, duplicated, cut at 10 s,
each delivery to any of the sandbox job's instances (two in the local stack)."""

from __future__ import annotations

import httpx
import pytest

from tests.reliability.harness import Harness

pytestmark = pytest.mark.e2e


def job_log(harness: Harness) -> str:
    """Every job instance's log, one after another."""
    return "".join(harness.log_path(unit).read_text() for unit in harness.jobs)


def units_naming(harness: Harness, run_ids: set[str]) -> dict[str, int]:
    """How many lines each job instance logged about the runs: a delivery that reached it says so
    (started, a duplicate acknowledged, or the negative ack that names the run)."""
    return {
        unit: sum(e.run_id in run_ids or any(run_id in e.message for run_id in run_ids) for e in entries)
        for unit, entries in harness.job_log().items()
    }


def test_shuffled_and_duplicated_actions_run_once_in_queued_order(harness: Harness) -> None:
    assert len(harness.jobs) >= 2, "the stack runs one job instance: nothing crosses instances"
    session = harness.session()
    requests = [
        harness.request(session, "executeCommands", {"commands": [f"echo {index} >> ledger.txt"]})
        for index in range(20)
    ]
    # Each published twice, all at once: the router's shuffle mixes both copies of all twenty, and
    # sends each delivery to an instance picked at random (eventarc/router.py).
    for copy in range(2):
        for request in reversed(requests) if copy else requests:
            harness.bus.publish_request(request)

    runs = [harness.wait_run(session, request.runId, timeout=120) for request in requests]

    assert [run["status"] for run in runs] == ["succeeded"] * 20, [run.get("error") for run in runs]
    assert [run.get("claims") for run in runs] == [1] * 20
    assert harness.ledger(session) == [str(index) for index in range(20)]
    started = [next(t["at"] for t in run["transitions"] if t["status"] == "running") for run in runs]
    assert started == sorted(started)
    # Both instances took part: 40 deliveries or more spread at random all reach one of two
    # instances once in 2^39. Which one starts a run is the order's business: the instance that
    # ends a run starts the session's next refused one itself (functions/job.py), so all twenty
    # may start on one.
    run_ids = {request.runId for request in requests}
    reached = units_naming(harness, run_ids)
    starts = {unit: sum(found.values()) for unit, found in harness.starts(run_ids).items()}
    print(f"lines naming the runs per instance {reached}; runs started per instance {starts}")
    assert all(reached.values()), f"not every job instance was delivered a run: {reached}"
    assert sum(starts.values()) == 20, starts


def test_action_past_the_ack_deadline_is_delivered_again_and_runs_once(harness: Harness) -> None:
    assert len(harness.jobs) >= 2, "the stack runs one job instance: nothing crosses instances"
    session = harness.session()
    request = harness.request(session, "executeCommands", {"commands": ["sleep 30", "echo done >> ledger.txt"]})
    message_id = harness.bus.publish_request(request)
    # Once it runs, the same message is delivered to every other instance as well, as Eventarc's
    # redelivery may land on any of them: the router's own redeliveries pick at random and may
    # all land where the run is.
    runner = harness.wait_for(
        "the run started on an instance",
        lambda: [unit for unit, found in harness.starts({request.runId}).items() if found],
        bool,
        timeout=60,
    )
    others = [index for index, unit in enumerate(harness.jobs) if unit not in runner]
    headers, body = harness.cloudevent(request, message_id)
    answers = [
        httpx.post(harness.stack.job_url(index), content=body, headers=headers, timeout=60).status_code
        for index in others
    ]

    run = harness.wait_run(session, request.runId, timeout=120)

    assert run["status"] == "succeeded", run.get("error")
    assert run["claims"] == 1
    assert answers == [409] * len(others), answers  # a negative ack: it comes back, and finds the run done
    busy = f"run {request.runId} is being executed by another delivery"
    refused_on = {unit for unit, entries in harness.job_log().items() if any(busy in e.message for e in entries)}
    assert refused_on >= {harness.jobs[index] for index in others}, refused_on
    assert job_log(harness).count(busy) >= 1 + len(others)
    assert sum(found[request.runId] for found in harness.starts({request.runId}).values()) == 1
    assert harness.ledger(session) == ["done"]
