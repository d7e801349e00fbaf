"""One session's actions spread over the sandbox job's instances, as Eventarc's pushes spread over
Cloud Run's (issue 25): the stack's router sends each delivery to any instance at random.

Which instance did what is read from the instances' own logs: the "<action> started" line of a run
carries its runId and the log file names the unit; a delivery refused for the session's order is
the "negative ack ...: run <runId> waits for run ..." line of the instance that received it. The
instance that ends a run starts the session's next refused one itself (functions/job.py), so a
later action whose delivery landed on the other instance mostly runs where the earlier ran: that
landing is the crossing the issue measured.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import job_log_entries, started_on, wait_for_run

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Issue 25's acceptance: the later action starts within 1 s of the earlier's end, on any instance.
GAP_PROMISE_SECONDS = 1.0
# Each later action's delivery lands on the other instance with odds 1/2: in 6 rounds, one crossing is all but sure.
OVERLAP_ROUNDS = 6
CROSSINGS_WANTED = 2
WRITE_READ_ROUNDS = 20
REFUSED_FOR_ORDER = re.compile(r"run (\S+) waits for run \S+ of its session")  # functions/job.py's Busy


@pytest.fixture
def instances(stack: Stack) -> Stack:
    if stack.job_count < 2:
        pytest.skip("one sandbox job instance (VIBESDK_JOB_INSTANCES=1): nothing to spread over")
    return stack


@dataclass(frozen=True)
class Whereabouts:
    """From the job instances' logs: the unit that last started each run, and the units that
    refused a delivery of it for its session's order."""

    ran: dict[str, str]
    refused: dict[str, set[str]]


def whereabouts(stack: Stack) -> Whereabouts:
    refused: dict[str, set[str]] = {}
    for unit, entry in job_log_entries(stack):
        if refusal := REFUSED_FOR_ORDER.search(str(entry.get("message", ""))):
            refused.setdefault(refusal.group(1), set()).add(unit)
    return Whereabouts(started_on(stack), refused)


def at(run: dict[str, Any], seq: int) -> datetime:
    """When the run entered a state, by its transition's sequence: 0 queued, 1 running, 2 ended."""
    return datetime.fromisoformat(next(item["at"] for item in run["transitions"] if item["seq"] == seq))


@dataclass(frozen=True)
class Pair:
    """Two runs of a session, next to each other in queued order."""

    earlier: dict[str, Any]
    later: dict[str, Any]
    ran_earlier: str
    ran_later: str
    refused_later: frozenset[str]

    @classmethod
    def of(cls, earlier: dict[str, Any], later: dict[str, Any], where: Whereabouts) -> Pair:
        def ran(run: dict[str, Any]) -> str:
            return where.ran.get(run["runId"], "no instance")

        return cls(earlier, later, ran(earlier), ran(later), frozenset(where.refused.get(later["runId"], set())))

    @property
    def gap(self) -> float:
        """The later's start less the earlier's end: never negative when the order holds."""
        return (at(self.later, 1) - at(self.earlier, 2)).total_seconds()

    @property
    def overlapping(self) -> bool:
        """The later was queued before the earlier had ended: it had to wait for it."""
        return at(self.later, 0) < at(self.earlier, 2)

    @property
    def crossed(self) -> bool:
        """The later ran, or a delivery of it landed, on another instance than the one running the earlier."""
        return self.ran_later != self.ran_earlier or bool(self.refused_later - {self.ran_earlier})

    def figures(self) -> dict[str, Any]:
        return {
            "earlier": f"{self.earlier['action']} {self.earlier['runId']} on {self.ran_earlier}",
            "later": f"{self.later['action']} {self.later['runId']} on {self.ran_later}",
            "later_refused_by": sorted(self.refused_later),
            "gap_seconds": round(self.gap, 3),
        }


def pairs_of(api: httpx.Client, stack: Stack, session: str) -> list[Pair]:
    runs = api.get(f"/api/agent/{session}/runs").json()["runs"]
    queued = sorted(runs, key=lambda run: (at(run, 0), run["runId"]))  # functions/job.py's queued order
    where = whereabouts(stack)
    return [Pair.of(earlier, later, where) for earlier, later in zip(queued, queued[1:], strict=False)]


def queue(api: httpx.Client, session: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    queued = api.post(f"/api/agent/{session}/actions", json={"action": action, "params": params})
    assert queued.status_code == 202, queued.text
    return dict(queued.json())


def act(api: httpx.Client, session: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
    run = wait_for_run(api, queue(api, session, action, params)["runUrl"])
    assert run["status"] == "succeeded", run
    return run


def new_session(api: httpx.Client) -> str:
    created = api.post("/api/agent", json={"templateName": "static-site"})
    assert created.status_code == 202, created.text
    assert wait_for_run(api, created.json()["runUrl"], timeout=120)["status"] == "succeeded"
    return str(created.json()["sessionId"])


def test_overlapping_actions_across_instances_end_in_queued_order_the_later_within_1_s(
    api: httpx.Client, instances: Stack
) -> None:
    """VibSDK's DeploymentManager sends getLogs and clearInstanceErrors at once (a Promise.all)
    right after an action: each waits for the one queued before it, wherever its delivery lands."""
    session = new_session(api)
    for _ in range(OVERLAP_ROUNDS):
        earlier = queue(api, session, "executeCommands", {"commands": ["sleep 3"]})
        with ThreadPoolExecutor(2) as pool:
            later = list(pool.map(lambda action: queue(api, session, action, {}), ["getLogs", "clearInstanceErrors"]))
        for queued in (earlier, *later):
            assert wait_for_run(api, queued["runUrl"])["status"] == "succeeded", queued
        pairs = pairs_of(api, instances, session)
        if sum(pair.overlapping and pair.crossed for pair in pairs) >= CROSSINGS_WANTED:
            break

    overlaps = [pair for pair in pairs if pair.overlapping]
    crossed = [pair for pair in overlaps if pair.crossed]
    ARTIFACTS.mkdir(exist_ok=True)
    figures = {"overlaps": [pair.figures() | {"crossed": pair.crossed} for pair in overlaps]}
    (ARTIFACTS / "overlap-gaps.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    for pair in pairs:
        assert pair.gap >= 0, f"{pair.figures()}: the later started {-pair.gap:.3f} s before the earlier ended"
    assert crossed, f"in {OVERLAP_ROUNDS} rounds no later action landed on another instance: {figures}"
    for pair in crossed:
        assert pair.gap <= GAP_PROMISE_SECONDS, (
            f"the later action started {pair.gap:.3f} s after the earlier ended, across instances "
            f"(promised within {GAP_PROMISE_SECONDS:g} s): {pair.figures()}"
        )


def test_a_session_alternating_instances_for_20_writes_and_reads_sees_every_write(
    api: httpx.Client, instances: Stack
) -> None:
    """A copy of the session on one instance goes stale when the other writes: every read sees
    the latest write and every earlier round's file, whichever instance serves it."""
    session = new_session(api)
    written: dict[str, str] = {}
    served: list[str] = []
    for round_ in range(WRITE_READ_ROUNDS):
        latest = f"round {round_}: {uuid.uuid4().hex}\n"
        written[f"notes/round-{round_}.txt"] = latest
        files = [{"filePath": "notes/latest.txt", "fileContents": latest}]
        files.append({"filePath": f"notes/round-{round_}.txt", "fileContents": latest})
        wrote = act(api, session, "writeFiles", {"files": files})
        read = act(api, session, "getFiles", {"filePaths": ["notes/latest.txt", *written]})
        served += [wrote["runId"], read["runId"]]
        got = {item["filePath"]: item["fileContents"] for item in read["result"]["files"]}
        where = whereabouts(instances).ran
        assert got == {"notes/latest.txt": latest} | written, (
            f"round {round_}: written on {where.get(wrote['runId'])}, read on {where.get(read['runId'])}; "
            f"missing {read['result'].get('missing')}"
        )
    ran = whereabouts(instances).ran
    by_unit = {unit: sum(ran[run_id] == unit for run_id in served) for unit in instances.job_units}
    print(f"{len(served)} actions served: {by_unit}")
    assert all(by_unit.values()), f"an instance served none of the {len(served)} actions: {by_unit}"


def test_every_instance_is_started_only_once_its_warm_up_has_ended(stack: Stack) -> None:
    """GET /readyz, what Cloud Run's startup probe asks (infra/gcp): 503 while the instance warms
    up, 200 once its warm-up (functions/warmup.py) has ended and logged so, in each instance."""
    for index, unit in enumerate(stack.job_units):
        deadline = time.monotonic() + 120
        while (answer := httpx.get(stack.job_url(index) + "/readyz", timeout=10)).status_code == 503:
            assert answer.json() == {"status": "warming up"}, unit
            assert time.monotonic() < deadline, f"{unit} still warming up after 120 s"
            time.sleep(0.5)
        assert (answer.status_code, answer.json()) == (200, {"status": "ready"}), unit
        # The line is written before the warm-up counts as ended.
        logged = [
            e for u, e in job_log_entries(stack) if u == unit and str(e.get("message")).startswith("instance ready: ")
        ]
        assert logged, f"{unit} is ready but never logged its warm-up"
