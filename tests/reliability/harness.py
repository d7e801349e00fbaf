"""What the reliability scenarios share: a stack with short leases, and ways to drive and inspect it."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack.config import HOST, Ports
from devstack.stack import Stack, start_stack
from tests import PORT_SHIFT
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

PORTS = Ports.shifted(16000 + PORT_SHIFT)
TOKEN = "reliability"
TERMINAL = ("succeeded", "failed")
# Short leases, so that a dead job's run is retaken or swept within a test's patience.
# The load scenario is one owner posting as fast as it can: the per-owner limits step aside.
STACK_ENV = {
    "VIBESDK_API_TOKEN": TOKEN,
    "VIBESDK_LEASE_SECONDS": "6",
    "VIBESDK_REQUESTS_PER_MINUTE": "1000000",
    "VIBESDK_MAX_ACTIVE_RUNS_PER_OWNER": "100000",
}


@dataclass(frozen=True)
class Row:
    scenario: str
    injected: str
    runs: int
    lost: int
    duplicated: int
    stuck: int
    note: str = ""

    @property
    def result(self) -> str:
        return "pass" if self.lost == self.duplicated == self.stuck == 0 else "FAIL"


class Harness:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = Settings.from_env(stack.env)
        self.store = RunStore(clients.firestore_client(self.settings))
        self.bus = Bus(clients.publisher_client(self.settings), self.settings.project)
        self.api = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def close(self) -> None:
        self.api.close()

    # --- driving
    def session(self, template: str = "python-app") -> str:
        created = self.api.post("/api/agent", json={"templateName": template}).raise_for_status().json()
        assert self.wait_run(created["sessionId"], created["runId"])["status"] == "succeeded"
        return str(created["sessionId"])

    def queue(self, session_id: str, action: str, params: dict[str, Any] | None = None) -> str:
        response = self.api.post(f"/api/agent/{session_id}/actions", json={"action": action, "params": params or {}})
        return str(response.raise_for_status().json()["runId"])

    def request(self, session_id: str, action: str, params: dict[str, Any]) -> SandboxRequest:
        """A run queued in Firestore but not published: the test decides how it is delivered."""
        request = SandboxRequest(
            sessionId=session_id,
            runId=str(uuid.uuid4()),
            action=action,
            params=params,
            issuedAt=utcnow(),
            owner="local",
        )
        self.store.queue_run(request, new_session=False)
        return request

    def cloudevent(self, request: SandboxRequest, message_id: str) -> tuple[dict[str, str], str]:
        headers = {
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": f"//pubsub.googleapis.com/projects/{self.stack.project}/topics/vibesdk-sandbox-requests",
            "ce-id": message_id,
            "Content-Type": "application/json",
        }
        body = {
            "subscription": "projects/p/subscriptions/direct",
            "message": {
                "data": base64.b64encode(request.model_dump_json().encode()).decode(),
                "attributes": request.attributes(),
                "messageId": message_id,
            },
        }
        return headers, json.dumps(body)

    def kill(self, unit: str, sig: int) -> None:
        self.stack.supervisor.kill(unit, sig)

    def pause(self, unit: str) -> None:
        os.killpg(self.stack.supervisor.child(unit).process.pid, signal.SIGSTOP)

    def resume(self, unit: str) -> None:
        os.killpg(self.stack.supervisor.child(unit).process.pid, signal.SIGCONT)

    def restart(self, unit: str) -> None:
        child = self.stack.supervisor.restart(unit)
        port = int(child.env["PORT"])
        self.stack.supervisor.wait_for_port(child, HOST, port)

    # --- inspecting
    def run(self, session_id: str, run_id: str) -> dict[str, Any]:
        return self.store.get_run(session_id, run_id)

    def wait_run(self, session_id: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(session_id, run_id)
            if run["status"] in TERMINAL and run.get("seq") == 2 or time.monotonic() > deadline:
                return run
            time.sleep(0.2)

    def ledger(self, session_id: str) -> list[str]:
        """Lines the session's commands appended to ledger.txt: one per execution."""
        run_id = self.queue(session_id, "getFiles", {"filePaths": ["ledger.txt"]})
        files = self.wait_run(session_id, run_id)["result"]["files"]
        return files[0]["fileContents"].split() if files else []

    def count(self, session_id: str, tokens: dict[str, str], timeout: float = 60) -> dict[str, int]:
        """Lost, duplicated and stuck among runs (run id -> token) whose command appends its token to the ledger.

        Lost: a run that says succeeded without its effect, or whose transitions are not queued,
        running, terminal in order. Duplicated: an effect applied more than once. Stuck: a run
        not terminal within the timeout.
        """
        runs = {run_id: self.wait_run(session_id, run_id, timeout) for run_id in tokens}
        executions = self.ledger(session_id)
        stuck = sum(run["status"] not in TERMINAL for run in runs.values())
        disorderly = sum(
            [t["seq"] for t in run["transitions"]] != [0, 1, 2] for run in runs.values() if run["status"] in TERMINAL
        )
        lost = sum(run["status"] == "succeeded" and tokens[run_id] not in executions for run_id, run in runs.items())
        duplicated = sum(executions.count(token) > 1 for token in tokens.values())
        return {"lost": lost + disorderly, "duplicated": duplicated, "stuck": stuck}


def ledger_command(token: str, before: str = "") -> dict[str, Any]:
    return {"commands": [f"{before}echo {token} >> ledger.txt"]}


def start(log_dir: Path) -> Stack:
    return start_stack(PORTS, dict(os.environ) | STACK_ENV, log_dir)
