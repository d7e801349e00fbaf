"""Fault and load scenarios against the real emulators and processes; each returns a Row.

`make test` runs them small (tests/reliability/test_reliability.py); `make reliability` runs
them full-size and writes docs/RELIABILITY.md (python -m tests.reliability).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from google.cloud.firestore_v1.base_query import FieldFilter

from bench.load import Completions, closed_loop, run_outcome
from control_plane.app import create_app
from control_plane.service import ControlPlane
from devstack.stack import PROJECT_ROOT
from functions.deadletters import DeadLetterBox
from tests.reliability.harness import TERMINAL, Harness, Row, ledger_command
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.names import REQUESTS_TOPIC, RUNS_COLLECTION
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import StatusEvent, utcnow
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import storage_for

JOB = "sandbox-job"
RECORDER = "status-recorder"


def duplicates(h: Harness, size: int) -> Row:
    """Each request published three times and posted to the job three times at once."""
    session = h.session()
    requests = []
    for _ in range(size):
        token = uuid.uuid4().hex
        requests.append((h.request(session, "executeCommands", ledger_command(token)), token))
    job = h.stack.ports.url("sandbox_job")

    def deliver(item: tuple[Any, str]) -> None:
        request, _ = item
        for _ in range(3):
            h.bus.publish_request(request)
        with ThreadPoolExecutor(3) as pool:
            list(
                pool.map(
                    lambda mid: httpx.post(
                        job, content=h.cloudevent(request, mid)[1], headers=h.cloudevent(request, mid)[0], timeout=120
                    ),
                    [f"direct-{request.runId}-{i}" for i in range(3)],
                )
            )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(deliver, requests))
    counts = h.count(session, {request.runId: token for request, token in requests}, timeout=120)
    return Row("duplicates", "each request published 3x and pushed 3x at once", size, **counts)


def reordering(h: Harness, size: int) -> Row:
    """Status events published terminal first, running last, and the terminal one again late."""
    session = h.session()
    runs = [h.request(session, "getInstanceStatus", {}) for _ in range(size)]
    for request in runs:
        terminal = StatusEvent(
            eventId=str(uuid.uuid4()),
            sessionId=session,
            runId=request.runId,
            seq=2,
            status="succeeded",
            time=utcnow(),
            result={"ok": True},
        )
        running = terminal.model_copy(
            update={"eventId": str(uuid.uuid4()), "seq": 1, "status": "running", "result": None}
        )
        h.bus.publish_status(terminal)
        time.sleep(0.05)
        h.bus.publish_status(running)
        h.bus.publish_status(terminal)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(h.run(session, r.runId)["transitions"]) < 3 for r in runs):
        time.sleep(0.2)
    finals = [h.run(session, r.runId) for r in runs]
    wrong = sum(run["status"] != "succeeded" or [t["seq"] for t in run["transitions"]] != [0, 1, 2] for run in finals)
    return Row(
        "reordering",
        "terminal before running, duplicate terminal late",
        size,
        lost=wrong,
        duplicated=0,
        stuck=sum(run["status"] not in TERMINAL for run in finals),
    )


def job_killed(h: Harness, size: int) -> Row:
    """SIGKILL on the sandbox job while it runs actions, then a new job process."""
    sessions = [h.session() for _ in range(size)]
    tokens = {}
    for session in sessions:
        token = uuid.uuid4().hex
        tokens[session] = (h.queue(session, "executeCommands", ledger_command(token, "sleep 3; ")), token)
    time.sleep(1.5)
    h.kill(JOB, signal.SIGKILL)
    h.restart(JOB)
    totals = {"lost": 0, "duplicated": 0, "stuck": 0}
    for session, (run_id, token) in tokens.items():
        for key, value in h.count(session, {run_id: token}, timeout=120).items():
            totals[key] += value
    return Row(
        "job killed mid-action",
        "SIGKILL on the sandbox job, restarted",
        size,
        **totals,
        note="redelivered with attempt 2, retaken at once",
    )


def lease_expired(h: Harness, size: int) -> Row:
    """Runs whose job vanished for good (claimed, never finished) and runs nobody ever took."""
    session = h.session()
    claimed = [h.request(session, "executeCommands", {"commands": ["true"]}) for _ in range(size)]
    for request in claimed:
        assert h.store.claim(session, request.runId, "gone-job", 1, lease_seconds=0.1, check_order=False) == "claimed"
    never = [h.request(session, "executeCommands", {"commands": ["true"]}) for _ in range(size)]
    time.sleep(0.5)
    env = h.stack.env | {"VIBESDK_SWEEP_GRACE_SECONDS": "0", "VIBESDK_QUEUE_TIMEOUT_SECONDS": "0"}
    subprocess.run(
        [sys.executable, "-m", "functions.sweeper"], cwd=PROJECT_ROOT, env=env, check=True, capture_output=True
    )
    finals = [h.run(session, r.runId) for r in claimed + never]
    reasons = [run.get("error") for run in finals]
    wrong = sum(reason not in ("lease expired", "expired in queue") for reason in reasons)
    return Row(
        "lease expired",
        "run claimed by a job that vanished; run never claimed",
        2 * size,
        lost=wrong,
        duplicated=0,
        stuck=sum(run["status"] not in TERMINAL for run in finals),
        note="sweeper: failed with 'lease expired' / 'expired in queue'",
    )


def recorder_down(h: Harness, size: int, seconds: float) -> Row:
    """The recorder stops answering (its processes frozen) while runs finish, then comes back.

    Frozen rather than killed: the emulator stops redelivering a message after a few refused
    connections (Google Cloud keeps to the retry policy); a frozen recorder times the pushes out
    instead, which the emulator retries as Pub/Sub does.
    """
    session = h.session()
    h.pause(RECORDER)
    tokens = {}
    try:
        for _ in range(size):
            token = uuid.uuid4().hex
            tokens[h.queue(session, "executeCommands", ledger_command(token))] = token
        time.sleep(seconds)
    finally:
        h.resume(RECORDER)
    counts = h.count(session, tokens, timeout=150)
    return Row(
        "status recorder down",
        f"recorder not answering for {seconds:.0f} s",
        size,
        **counts,
        note="pushes timed out and were retried; every transition recorded once it was back",
    )


def services_unavailable(h: Harness, size: int) -> Row:
    """POST /api/agent while Pub/Sub, then Firestore, cannot be reached."""
    from starlette.testclient import TestClient

    good = h.settings
    dead_pubsub = Settings.from_env(h.stack.env | {"PUBSUB_EMULATOR_HOST": "127.0.0.1:9"})
    dead_firestore = Settings.from_env(h.stack.env | {"FIRESTORE_EMULATOR_HOST": "127.0.0.1:9"})
    wrong, stuck, answered = 0, 0, 0
    for broken in (dead_pubsub, dead_firestore):
        store = RunStore(clients.firestore_client(broken)) if broken is dead_firestore else h.store
        bus = Bus(clients.publisher_client(broken), broken.project) if broken is dead_pubsub else h.bus
        plane = ControlPlane(store, bus, storage_for(good))
        with TestClient(create_app(good, plane)) as client:
            for _ in range(size):
                response = client.post(
                    "/api/agent",
                    json={"templateName": "python-app"},
                    headers={"Authorization": f"Bearer {good.api_token}"},
                )
                answered += 1
                wrong += (
                    response.status_code != 503
                    or "unavailable" not in response.text.lower()
                    and "could not" not in response.text
                )
    query = h.store._client.collection(RUNS_COLLECTION).where(filter=FieldFilter("status", "==", "queued"))
    queued = [snapshot.to_dict() for snapshot in query.stream()]
    stuck = sum(1 for session in queued if (utcnow() - session["updatedAt"]).total_seconds() > 30)
    return Row(
        "Pub/Sub or Firestore unreachable",
        "POST with each service down",
        answered,
        lost=wrong,
        duplicated=0,
        stuck=stuck,
        note="503 with a message; a run whose publish failed ends failed",
    )


def poison(h: Harness, size: int) -> Row:
    session = h.session()
    box = DeadLetterBox(h.settings)
    publisher = clients.publisher_client(h.settings)
    topic = publisher.topic_path(h.settings.project, REQUESTS_TOPIC)
    identified = []
    for index in range(size):
        request = h.request(session, "executeCommands", {"commands": ["true"]})
        kinds = [
            (b"\xff not json", {}),
            (b'{"sessionId": "x"}', {"schemaVersion": "99"}),
            (
                json.dumps({**json.loads(request.model_dump_json()), "action": "launchRocket"}).encode(),
                request.attributes(),
            ),
        ]
        data, attributes = kinds[index % 3]
        publisher.publish(topic, data, **attributes).result()
        if attributes.get("runId"):
            identified.append(request.runId)
    deadline = time.monotonic() + 60
    letters: list[Any] = []
    while time.monotonic() < deadline and len(letters) < size:
        letters = box.peek(1000)
        time.sleep(0.5)
    failed = [h.wait_run(session, run_id) for run_id in identified]
    wrong = sum(run["status"] != "failed" or "SandboxRequest" not in (run.get("error") or "") for run in failed)
    lost = max(0, size - len(letters)) + wrong
    return Row(
        "poison messages",
        "bad JSON, unknown schema version, unknown action",
        size,
        lost=lost,
        duplicated=0,
        stuck=0,
        note=f"{len(letters)} dead-lettered at once; runs named failed with the reason",
    )


def graceful_shutdown(h: Harness, size: int) -> Row:
    session = h.session()
    tokens = {}
    for _ in range(size):
        token = uuid.uuid4().hex
        tokens[h.queue(session, "executeCommands", ledger_command(token, "sleep 2; "))] = token
    time.sleep(1.0)
    h.kill(JOB, signal.SIGTERM)
    h.restart(JOB)
    counts = h.count(session, tokens, timeout=120)
    return Row(
        "graceful shutdown",
        "SIGTERM to the sandbox job mid-action",
        size,
        **counts,
        note="in-flight action finished before exit; the rest redelivered",
    )


def load(h: Harness, size: int, concurrency: int) -> Row:
    async def measure() -> Any:
        completions = Completions(asyncio.get_running_loop(), h.store._client, run_outcome, "status")
        async with httpx.AsyncClient(base_url=h.stack.api_url, headers=h.api.headers, timeout=60) as client:

            async def start_one() -> str:
                body = {"templateName": "python-app", "action": "getInstanceStatus"}
                queued = (await client.post("/api/agent", json=body)).raise_for_status().json()
                started.append((queued["sessionId"], queued["runId"]))
                return f"{RUNS_COLLECTION}/{queued['sessionId']}/runs/{queued['runId']}"

            result = await closed_loop(size, concurrency, start_one, completions, timeout=300)
        completions.close()
        return result

    started: list[tuple[str, str]] = []
    result = asyncio.run(measure())
    runs = [h.run(session, run_id) for session, run_id in started]
    twice = sum(run.get("claims", 0) > 1 for run in runs)
    summary = result.summary()
    return Row(
        "load",
        f"{size} runs through the API at concurrency {concurrency}",
        size,
        lost=size - len(runs) + sum([t["seq"] for t in r["transitions"]] != [0, 1, 2] for r in runs),
        duplicated=twice,
        stuck=sum(run["status"] not in TERMINAL for run in runs),
        note=f"{summary['runs_per_second']} runs/s; p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, p99 {summary['p99_ms']} ms",
    )


def possible(run: dict[str, Any]) -> bool:
    """A run the state machine could have produced: queued first, in order, status of its last step."""
    seqs = [t["seq"] for t in run["transitions"]]
    statuses = [t["status"] for t in run["transitions"]]
    return (
        statuses[0] == "queued"
        and seqs == sorted(set(seqs))
        and all(status not in TERMINAL for status in statuses[:-1])
        and run["status"] == statuses[seqs.index(run["seq"])]
    )


def fuzz(h: Harness, examples: int) -> Row:
    """schemathesis against /openapi.json: no 5xx, no run in an impossible state."""
    env = dict(os.environ) | {"VIBESDK_API_TOKEN": h.api.headers["Authorization"].split()[1]}
    result = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "schemathesis"),
            "run",
            f"{h.stack.api_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(examples),
            "--header",
            f"Authorization: Bearer {env['VIBESDK_API_TOKEN']}",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    impossible = sum(not possible(snapshot.to_dict()) for snapshot in h.store._client.collection_group("runs").stream())
    server_errors = result.returncode != 0
    return Row(
        "API fuzzing",
        f"schemathesis, {examples} examples per operation",
        examples,
        lost=impossible,
        duplicated=0,
        stuck=int(server_errors),
        note="no 5xx" if not server_errors else result.stdout[result.stdout.find("FAILURES") :][:2000],
    )
