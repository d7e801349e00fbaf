"""What the runner protocol's synchronous wait adds, against the same action queued through /api and awaited.

A runner call (VibSDK's RemoteSandboxServiceClient: `POST /runner/instances/{id}/commands`,
`POST` and `GET .../files`) queues a run and answers once the run is terminal; the same action
through /api is `POST /api/agent/{s}/actions`, then `GET /api/agent/{s}/runs/{r}?wait=N`. Both at
concurrency 1, alternated, on one instance. Each call is judged from its answer's arrival
(time.time(), as soon as the answer is read) back to the moment its run turned terminal in
Firestore: the commit time of the run document's terminal write (Firestore's own update time; the
emulator stamps it with this machine's clock, the one the bench reads). Beside it, the same from the
run's `updatedAt` (the status recorder's clock as it made that write) and from the terminal
transition's `at` (the job's clock as it sent the event, so the status topic's delivery counts in).
All three clocks are this machine's.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.stack import Stack
from vibesdk_gcp import clients
from vibesdk_gcp.names import RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.settings import Settings

TEMPLATE = "static-site"
GOAL_MS = 10.0
API_WAIT_SECONDS = 30
BENCH_FILE = {"filePath": "bench/runner.txt", "fileContents": "measured\n"}
TERMINAL = ("succeeded", "failed")
# Each call: the runner's request (method, path under the instance, body) and the same action for /api.
CALLS: dict[str, tuple[tuple[str, str, Any], str, dict[str, Any]]] = {
    # The runner lets a key with egress (the bench's) ask for network, as VibSDK's agent installs packages.
    "commands": (
        ("POST", "/commands", {"commands": ["true"]}),
        "executeCommands",
        {"commands": ["true"], "allowNetwork": True},
    ),
    "write files": (("POST", "/files", {"files": [BENCH_FILE]}), "writeFiles", {"files": [BENCH_FILE]}),
    "read files": (
        # getFiles: ?filePaths= + encodeURIComponent(JSON.stringify(paths))
        ("GET", "/files?filePaths=" + urllib.parse.quote(json.dumps([BENCH_FILE["filePath"]]), safe="!'()*-._~"), None),
        "getFiles",
        {"filePaths": [BENCH_FILE["filePath"]]},
    ),
}


class RunnerClient:
    """Requests as VibSDK's RemoteSandboxServiceClient sends them: bearer token, the agent's session
    in x-session-id, `Content-Type: application/json` on every request, bodies as JSON text."""

    def __init__(self, stack: Stack, token: str, timeout: float = 300) -> None:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "x-session-id": str(uuid.uuid4()),
        }
        self.http = httpx.Client(base_url=stack.api_url + "/runner", headers=headers, timeout=timeout)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, content=None if body is None else json.dumps(body))
        if response.status_code != 200:
            raise RuntimeError(f"{method} /runner{path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def create(self, body: dict[str, Any], poll_seconds: float = 0.1, timeout: float = 300) -> tuple[str, int]:
        """createInstance, then its status until healthy (as DeploymentManager sees it); the id and the polls."""
        created = self.call("POST", "/instances", body)
        if not created.get("success") or not created.get("runId"):
            raise RuntimeError(f"createInstance: {created}")
        instance, polls, deadline = created["runId"], 0, time.monotonic() + timeout
        while True:
            status = self.call("GET", f"/instances/{instance}/status")
            polls += 1
            if status.get("isHealthy"):
                return instance, polls
            if not status.get("pending", True) or time.monotonic() > deadline:
                raise RuntimeError(f"instance {instance} never became healthy: {status}")
            time.sleep(poll_seconds)


def _seconds(value: Any) -> float:
    """A Firestore timestamp or an ISO 8601 string, as seconds since the epoch."""
    return value.timestamp() if hasattr(value, "timestamp") else datetime.fromisoformat(str(value)).timestamp()


class _Runs:
    """The runs' documents as Firestore holds them."""

    def __init__(self, stack: Stack) -> None:
        self.client = clients.firestore_client(Settings.from_env(stack.env))

    def made_by(self, session_id: str, action: str, since: datetime) -> str | None:
        """The session's newest run of `action` queued since then: the one a call just made. Not the
        session's latest run, which may be a follow-up the job queued behind it (a live preview's
        refreshPreview after a write), whose status can land first when another instance runs it."""
        runs = (
            self.client.collection(RUNS_COLLECTION)
            .document(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .where(filter=FieldFilter("createdAt", ">=", since))
            .get()
        )
        made = [run.to_dict() or {} for run in runs]
        made = [run for run in made if run.get("action") == action]
        return str(max(made, key=lambda run: run["createdAt"])["runId"]) if made else None

    def run(self, session_id: str, run_id: str) -> Any:
        return (
            self.client.collection(RUNS_COLLECTION)
            .document(session_id)
            .collection(RUNS_SUBCOLLECTION)
            .document(run_id)
            .get()
        )

    def terminal_times(self, session_id: str, run_id: str, action: str, answered: float) -> dict[str, float]:
        """Milliseconds from each moment of the run's end to the answer. A quick action's run gets one
        status event (its running transition rides on the terminal one): no write follows the terminal."""
        snapshot = self.run(session_id, run_id)
        run = snapshot.to_dict() or {}
        assert run.get("action") == action, f"run {run_id} is {run.get('action')!r}, not the {action} just made"
        if run.get("status") != "succeeded":
            raise RuntimeError(f"{action} run {run_id}: {run.get('status')} {run.get('error')}")
        last = max(run["transitions"], key=lambda transition: transition["seq"])
        return {
            "commit": (answered - snapshot.update_time.timestamp()) * 1000,
            "updated_at": (answered - _seconds(run["updatedAt"])) * 1000,
            "transition_at": (answered - _seconds(last["at"])) * 1000,
        }


def _through_runner(runner: RunnerClient, runs: _Runs, instance: str, call: str) -> dict[str, float]:
    (method, path, body), action, _ = CALLS[call]
    began = time.time()
    since = datetime.fromtimestamp(began, UTC)
    answer = runner.call(method, f"/instances/{instance}{path}", body)
    answered = time.time()
    if answer.get("success") is False:
        raise RuntimeError(f"runner {call}: {answer}")
    run_id = runs.made_by(instance, action, since)
    assert run_id is not None, f"runner {call} queued no run"
    return runs.terminal_times(instance, run_id, action, answered) | {"call": (answered - began) * 1000}


def _through_api(api: httpx.Client, runs: _Runs, instance: str, call: str) -> dict[str, float]:
    _, action, params = CALLS[call]
    began = time.time()
    queued = api.post(f"/api/agent/{instance}/actions", json={"action": action, "params": params})
    queued.raise_for_status()
    run_id = queued.json()["runId"]
    waited = api.get(f"/api/agent/{instance}/runs/{run_id}", params={"wait": API_WAIT_SECONDS})
    answered = time.time()
    waited.raise_for_status()
    if waited.json()["status"] not in TERMINAL:
        raise RuntimeError(f"GET .../runs/{run_id}?wait={API_WAIT_SECONDS} answered before the run ended")
    return runs.terminal_times(instance, run_id, action, answered) | {"call": (answered - began) * 1000}


def _p50(samples: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(sample[key] for sample in samples)), 1)


def runner_wait(stack: Stack, token: str, repeats: int) -> dict[str, Any]:
    """Each call `repeats` times each way, alternated (runner, api, then api, runner, ...), after one
    unmeasured of each; p50s of answer minus terminal, per call and over all calls."""
    runner = RunnerClient(stack, token)
    runs = _Runs(stack)
    api = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
    instance, _ = runner.create({"templateName": TEMPLATE, "projectName": "bench-runner-wait"})
    ways: dict[str, Callable[[str], dict[str, Any]]] = {
        "runner": lambda call: _through_runner(runner, runs, instance, call),
        "api": lambda call: _through_api(api, runs, instance, call),
    }
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {way: {call: [] for call in CALLS} for way in ways}
    for call in CALLS:
        for way in ways.values():
            way(call)  # unmeasured
        for index in range(repeats):
            for name in ("runner", "api") if index % 2 == 0 else ("api", "runner"):
                samples[name][call].append(ways[name](call))
    runner.call("DELETE", f"/instances/{instance}")
    keys = ("commit", "updated_at", "transition_at", "call")
    per_way = {
        name: {
            "calls": {call: {key: _p50(found, key) for key in keys} for call, found in by_call.items()},
            "all": {key: _p50([s for found in by_call.values() for s in found], key) for key in keys},
        }
        for name, by_call in samples.items()
    }
    return {
        "repeats": repeats,
        "template": TEMPLATE,
        "api_wait_s": API_WAIT_SECONDS,
        "requests": {
            call: f"{method} /runner/instances/{{id}}{path}" for call, ((method, path, _), _, _) in CALLS.items()
        },
        "actions": {call: action for call, (_, action, _) in CALLS.items()},
        "goal_ms": GOAL_MS,
        **per_way,
    }
