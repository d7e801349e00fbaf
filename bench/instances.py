"""A session's actions spread over the sandbox job's instances (issue 25): the overlap wait, and a
session's first action on an instance.

- The overlap wait: a session's `sleep` action, then at once getLogs and clearInstanceErrors queued
  together, as VibSDK's DeploymentManager queues them (a `Promise.all` right after its previous call;
  cloudflare/vibesdk worker/agents/services/implementations/DeploymentManager.ts). Eventarc's delivery
  lands each on either instance; a later action refused for the order used to wait for Pub/Sub's
  backoff (10 s at least). Each consecutive pair in queued order is timed on the job's own clock (the
  runs' transitions): the later's end and its start, after the earlier's end; the job's logs say which
  instance ran each.
- The first action on an instance: a session created through the API (on whichever instance its
  delivery reached), then `echo` pushed as a CloudEvent straight to the other instance, as Eventarc
  would deliver it (eventarc/cloudevent.py), queued in Firestore first and never published, so only
  that push runs it; then the next `echo`s pushed to the same instance. Both instances have run a
  createInstance of the template before (for react-vite: both hold its dependency tree).
"""

from __future__ import annotations

import base64
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.goals import goal, other
from bench.job_logs import JobLogs
from devstack.stack import Stack
from eventarc.cloudevent import message_published
from vibesdk_gcp import clients
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.names import REQUESTS_TOPIC, RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

GOAL_OVERLAP_S = 1.0
GOAL_FIRST_ACTION_S = 1.0
EARLIER = "sleep 2"
# DeploymentManager's Promise.all, queued the moment the call before it answered.
LATER = ("getLogs", "clearInstanceErrors")
TEMPLATES = ("static-site", "react-vite")
ECHO = {"commands": ["echo first"]}
TERMINAL = ("succeeded", "failed")
RUN_TIMEOUT_SECONDS = 120.0
# How many createInstance runs may go by before both instances have run one of a template.
WARM_UP_CREATES = 10


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 3)


def _seconds(value: Any) -> float:
    return float(value.timestamp())


class _Session:
    """The API and Firestore as the bench drives one owner's sessions."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.stack = stack
        self.api = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        self.firestore = clients.firestore_client(Settings.from_env(stack.env))
        self.store = RunStore(self.firestore)
        self.logs = JobLogs(stack)

    def create(self, template: str) -> tuple[str, str]:
        """A session created through the API, at rest (its preview's first build done): its id and run."""
        created = self.api.post("/api/agent", json={"templateName": template}).raise_for_status().json()
        run = self.run(created["sessionId"], created["runId"])
        if run["status"] != "succeeded":
            raise RuntimeError(f"createInstance of {template}: {run['status']} {run.get('error')}")
        self.at_rest(created["sessionId"])
        return str(created["sessionId"]), str(created["runId"])

    def at_rest(self, session: str) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while self.store.unfinished_in_session(session):
            if time.monotonic() > deadline:
                raise RuntimeError(f"session {session} still has unfinished runs after {RUN_TIMEOUT_SECONDS:g} s")
            time.sleep(0.1)

    def queue(self, session: str, action: str, params: dict[str, Any]) -> str:
        queued = self.api.post(f"/api/agent/{session}/actions", json={"action": action, "params": params})
        return str(queued.raise_for_status().json()["runId"])

    def run(self, session: str, run_id: str) -> dict[str, Any]:
        """The run's document once it is terminal (waited for through the API's long poll)."""
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            waited = self.api.get(f"/api/agent/{session}/runs/{run_id}", params={"wait": 30}, timeout=60)
            if waited.raise_for_status().json()["status"] in TERMINAL:
                break
        snapshot = self.firestore.document(f"{RUNS_COLLECTION}/{session}/{RUNS_SUBCOLLECTION}/{run_id}").get()
        found = snapshot.to_dict() or {}
        if found.get("status") not in TERMINAL:
            raise RuntimeError(f"run {run_id} not ended within {RUN_TIMEOUT_SECONDS:g} s: {found.get('status')}")
        return found

    def owner(self, session: str) -> str:
        return str((self.firestore.document(f"{RUNS_COLLECTION}/{session}").get().to_dict() or {})["owner"])

    def push(self, instance: int, session: str, owner: str, action: str, params: dict[str, Any]) -> tuple[str, float]:
        """The action queued in Firestore and pushed straight to one instance: its run and the push's seconds."""
        fields = {"sessionId": session, "runId": str(uuid.uuid4()), "action": action, "params": params}
        request = SandboxRequest.model_validate(fields | {"issuedAt": utcnow(), "owner": owner})
        self.store.queue_run(request, new_session=False)
        message_id = f"bench-{request.runId}"
        data = request.model_dump_json().encode()
        raw = {"data": base64.b64encode(data).decode(), "attributes": request.attributes(), "messageId": message_id}
        message = PubsubMessage(data, message_id, request.attributes(), subscription="projects/p/subscriptions/bench")
        headers, body = message_published(message, self.stack.project, REQUESTS_TOPIC, raw)
        began = time.perf_counter()
        answer = httpx.post(self.stack.job_url(instance) + "/", json=body, headers=headers, timeout=RUN_TIMEOUT_SECONDS)
        seconds = time.perf_counter() - began
        if answer.status_code >= 300:
            raise RuntimeError(f"{action} pushed to instance {instance}: {answer.status_code} {answer.text[:300]}")
        return request.runId, seconds

    def close(self) -> None:
        self.api.close()


def _times(run: dict[str, Any]) -> dict[str, float]:
    """The run's start (running) and end (terminal) on the job's clock, and when it was queued."""
    at = {item["status"]: _seconds(item["at"]) for item in run["transitions"]}
    return {"queued": _seconds(run["createdAt"]), "start": at["running"], "end": at[run["status"]]}


def _pair_stats(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    ends = [p["end_after_s"] for p in pairs]
    starts = [p["start_after_s"] for p in pairs]
    across = [p for p in pairs if p["instances"][0] != p["instances"][1]]
    return {
        "pairs": len(pairs),
        "end_after_p50_s": _percentile(ends, 50),
        "end_after_p95_s": _percentile(ends, 95),
        "end_after_max_s": _percentile(ends, 100),
        "start_after_p50_s": _percentile(starts, 50),
        "start_after_p95_s": _percentile(starts, 95),
        "start_after_max_s": _percentile(starts, 100),
        "on_different_instances": len(across),
        "spread_over_instances": sum(p["spread"] for p in pairs),
        "across_end_after_p95_s": _percentile([p["end_after_s"] for p in across], 95),
        "later_refused": sum(p["later_refused"] for p in pairs),
        "overlapping": sum(p["start_after_s"] < 0 for p in pairs),
        "failed": sum(p["statuses"] != ["succeeded", "succeeded"] for p in pairs),
    }


def overlap_wait(stack: Stack, token: str, rounds: int) -> dict[str, Any]:
    """`rounds` times: the sleep, then LATER queued at once; every consecutive pair in queued order."""
    driver = _Session(stack, token)
    session, _ = driver.create("static-site")
    queued: list[list[str]] = []
    with ThreadPoolExecutor(len(LATER)) as pool:
        for _ in range(rounds):
            earlier = driver.queue(session, "executeCommands", {"commands": [EARLIER]})
            later = list(pool.map(lambda action: driver.queue(session, action, {}), LATER))
            runs = [earlier, *later]
            for run_id in runs:
                driver.run(session, run_id)
            queued.append(runs)
    ran_on, refused_on = driver.logs.ran_on(), driver.logs.refused_on()
    behind_sleep: list[dict[str, Any]] = []
    behind_quick: list[dict[str, Any]] = []
    for runs in queued:
        docs = [driver.run(session, run_id) for run_id in runs]
        # The queue's order: as the job keeps it (functions/job.py, _next_queued).
        ordered = sorted(docs, key=lambda doc: (_seconds(doc["createdAt"]), doc["runId"]))
        for index, (first, second) in enumerate(zip(ordered, ordered[1:], strict=False)):
            a, b = _times(first), _times(second)
            earlier_on, later_on = ran_on.get(first["runId"], "?"), ran_on.get(second["runId"], "?")
            later_refused_on = refused_on.get(second["runId"], [])
            pair: dict[str, Any] = {
                "actions": [first["action"], second["action"]],
                "statuses": [first["status"], second["status"]],
                "instances": [earlier_on, later_on],
                "end_after_s": round(b["end"] - a["end"], 3),
                "start_after_s": round(b["start"] - a["end"], 3),
                "later_queued_before_earlier_ended": b["queued"] < a["end"],
                "later_refused": second.get("refusedAt") is not None,
                "later_refused_on": later_refused_on,
                # The later's delivery reached, or its run ran on, another instance than the earlier's.
                "spread": bool({*later_refused_on, later_on} - {earlier_on}),
            }
            (behind_sleep if index == 0 else behind_quick).append(pair)
    driver.close()
    return {
        "rounds": rounds,
        "earlier": EARLIER,
        "later": list(LATER),
        "instances": stack.job_count,
        "goal_s": GOAL_OVERLAP_S,
        "behind_the_sleep": _pair_stats(behind_sleep),
        "behind_a_quick_action": _pair_stats(behind_quick),
        "queued_while_earlier_ran": sum(p["later_queued_before_earlier_ended"] for p in behind_sleep),
        "pairs": behind_sleep + behind_quick,
    }


def first_actions(stack: Stack, token: str, repeats: int, nexts: int) -> dict[str, Any]:
    """Per template, `repeats` sessions: the first `echo` on the instance that did not create it, then
    `nexts` more there."""
    if stack.job_count < 2:
        return {"skipped": f"needs two job instances; the stack runs {stack.job_count}"}
    driver = _Session(stack, token)
    units = stack.job_units
    found: dict[str, Any] = {"repeats": repeats, "nexts": nexts, "instances": stack.job_count, "templates": {}}
    for template in TEMPLATES:
        warm_creates = _warm_up(driver, template, units)
        samples = []
        for _ in range(repeats):
            session, create_run = driver.create(template)
            creator = driver.logs.ran_on()[create_run]
            other_instance = next(index for index, unit in enumerate(units) if unit != creator)
            owner = driver.owner(session)
            first_run, first_push = driver.push(other_instance, session, owner, "executeCommands", ECHO)
            next_pushes = [driver.push(other_instance, session, owner, "executeCommands", ECHO) for _ in range(nexts)]
            ran_on, restores = driver.logs.ran_on(), driver.logs.restores()
            first = driver.run(session, first_run)
            if first["status"] != "succeeded" or ran_on.get(first_run) != units[other_instance]:
                raise RuntimeError(
                    f"the first echo on {units[other_instance]}: {first['status']} on {ran_on.get(first_run)}"
                )
            samples.append(
                {
                    "created_on": creator,
                    "pushed_to": units[other_instance],
                    "first": _action_times(first, first_push),
                    "first_restore": restores.get(first_run),
                    "next": [_action_times(driver.run(session, run_id), seconds) for run_id, seconds in next_pushes],
                    "next_restores": [restores.get(run_id) for run_id, _ in next_pushes],
                }
            )
        found["templates"][template] = _first_stats(samples) | {"warm_up_creates": warm_creates, "samples": samples}
    found["warm_ups"] = driver.logs.warm_ups()
    driver.close()
    return found


def _warm_up(driver: _Session, template: str, units: list[str]) -> int:
    """createInstance of the template until each instance has run one (for react-vite: its tree on the disk)."""
    created_on: set[str] = set()
    for count in range(1, WARM_UP_CREATES + 1):
        _, run_id = driver.create(template)
        created_on.add(driver.logs.ran_on()[run_id])
        if created_on >= set(units):
            return count
    raise RuntimeError(f"{WARM_UP_CREATES} createInstance runs of {template} never reached every instance")


def _action_times(run: dict[str, Any], push_seconds: float) -> dict[str, float | None]:
    """The push's whole time, the run's (running to its end, on the job's clock) and its command's in the sandbox."""
    times = _times(run)
    results = (run.get("result") or {}).get("results") or [{}]
    command_ms = results[0].get("durationMs")
    return {
        "push_s": round(push_seconds, 3),
        "run_s": round(times["end"] - times["start"], 3),
        "claim_s": round(times["start"] - times["queued"], 3),
        "command_s": None if command_ms is None else round(command_ms / 1000, 3),
    }


def _first_stats(samples: list[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), 3) if known else None

    stats: dict[str, Any] = {}
    for key in ("push_s", "run_s", "command_s"):
        first = median([s["first"][key] for s in samples])
        later = median([n[key] for s in samples for n in s["next"]])
        stats[key] = {"first": first, "next": later, "ratio": round(first / later, 2) if first and later else None}
    stats["first_push_samples_s"] = [s["first"]["push_s"] for s in samples]
    for key in ("bytes", "s", "files"):
        first = median([(s["first_restore"] or {}).get(key) for s in samples])
        later = median([(r or {}).get(key) for s in samples for r in s["next_restores"]])
        stats[f"restore_{key}"] = {"first": first, "next": later}
    return stats


def instance_goals(overlap: dict[str, Any], firsts: dict[str, Any]) -> list[dict[str, Any]]:
    sleep = overlap["behind_the_sleep"]
    quick = overlap["behind_a_quick_action"]
    overlap_invalid = []
    if not sleep["spread_over_instances"] + quick["spread_over_instances"]:
        overlap_invalid.append("no pair spread over two instances (no later action delivered to, or run on, another)")
    if sleep["failed"] or quick["failed"]:
        overlap_invalid.append(f"{sleep['failed'] + quick['failed']} pairs had a failed run")
    if sleep["overlapping"] or quick["overlapping"]:
        overlap_invalid.append(f"{sleep['overlapping'] + quick['overlapping']} pairs ran at once")
    goals = [
        goal(
            f"overlap wait: a later action ends <= {GOAL_OVERLAP_S:g} s after the earlier one, p95",
            f"p95 over {sleep['pairs']} pairs (`{overlap['earlier']}`, then the first of {' and '.join(LATER)} "
            f"queued at once), {overlap['instances']} instances: {sleep['spread_over_instances']} pairs spread over two "
            f"(the later delivered to or run on another instance), {sleep['on_different_instances']} ran on two",
            sleep["end_after_p95_s"],
            GOAL_OVERLAP_S,
            others=[
                other("p50", sleep["end_after_p50_s"], GOAL_OVERLAP_S),
                other("start after the earlier's end, p95", sleep["start_after_p95_s"], GOAL_OVERLAP_S),
                other("the second quick action after the first, p95", quick["end_after_p95_s"], GOAL_OVERLAP_S),
                other("worst pair", max(sleep["end_after_max_s"] or 0, quick["end_after_max_s"] or 0), GOAL_OVERLAP_S),
            ],
            invalid="; ".join(overlap_invalid),
        )
    ]
    for template in TEMPLATES:
        found = firsts.get("templates", {}).get(template)
        if not found:
            goals.append(
                goal(
                    f"{template}: a session's first action on an instance <= {GOAL_FIRST_ACTION_S:g} s",
                    "not run",
                    None,
                    GOAL_FIRST_ACTION_S,
                    invalid=firsts.get("skipped", "not run"),
                )
            )
            continue
        push = found["push_s"]
        goals.append(
            goal(
                f"{template}: a session's first action on an instance <= {GOAL_FIRST_ACTION_S:g} s",
                f"median of {firsts['repeats']} first `echo`s pushed to the instance that did not create the "
                "session (the push's whole time)",
                push["first"],
                GOAL_FIRST_ACTION_S,
                others=[
                    other(f"slowest of {firsts['repeats']}", max(found["first_push_samples_s"]), GOAL_FIRST_ACTION_S),
                    other("the next actions there, median", push["next"], GOAL_FIRST_ACTION_S),
                    other("the run alone (running to succeeded)", found["run_s"]["first"], GOAL_FIRST_ACTION_S),
                ],
            )
        )
    return goals
