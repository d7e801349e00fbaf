"""Waits on the whole stack: a run's GET with `?wait=` and the session's events stream, both woken by
Firestore's listeners as the recorder writes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from control_plane.keys import KeyStore
from devstack.stack import Stack
from tests.e2e.conftest import wait_for_run
from vibesdk_gcp import clients
from vibesdk_gcp.settings import Settings

pytestmark = pytest.mark.e2e

# From the recorder's write to the waiting answer: Pub/Sub's push, Firestore's listener, the API.
MARGIN_SECONDS = 2.0


@pytest.fixture(scope="module")
def session(api: httpx.Client) -> str:
    created = api.post("/api/agent", json={"templateName": "static-site", "projectName": "waits"})
    assert created.status_code == 202, created.text
    assert wait_for_run(api, created.json()["runUrl"])["status"] == "succeeded"
    return str(created.json()["sessionId"])


def queue_command(api: httpx.Client, session: str, command: str) -> dict[str, Any]:
    queued = api.post(
        f"/api/agent/{session}/actions", json={"action": "executeCommands", "params": {"commands": [command]}}
    )
    assert queued.status_code == 202, queued.text
    return dict(queued.json())


def test_a_wait_answers_as_soon_as_the_run_ends(api: httpx.Client, session: str) -> None:
    queued = queue_command(api, session, "sleep 2")
    started = time.monotonic()
    answer = api.get(queued["runUrl"], params={"wait": 30}, timeout=40)
    arrived, took = time.time(), time.monotonic() - started
    run = answer.json()
    assert answer.status_code == 200 and run["status"] == "succeeded", run
    ended = datetime.fromisoformat(run["transitions"][-1]["at"]).timestamp()
    print(f"?wait= answered {arrived - ended:.3f} s after the run's terminal transition")
    # Woken by the terminal transition itself, long before the wait's end.
    assert arrived - ended < MARGIN_SECONDS, (arrived - ended, run)
    assert 2 <= took < 15


def test_past_the_wait_the_run_is_answered_as_it_stands(api: httpx.Client, session: str) -> None:
    queued = queue_command(api, session, "sleep 5")
    started = time.monotonic()
    run = api.get(queued["runUrl"], params={"wait": 1}).json()
    took = time.monotonic() - started
    assert run["status"] in ("queued", "running"), run
    assert 1 <= took < 1 + MARGIN_SECONDS
    assert wait_for_run(api, queued["runUrl"])["status"] == "succeeded"


@pytest.mark.parametrize("wait", ["-1", "abc", "1e9", "61", ""])
def test_a_bad_wait_is_422_naming_it(api: httpx.Client, session: str, wait: str) -> None:
    runs = api.get(f"/api/agent/{session}/runs").json()["runs"]
    answer = api.get(f"/api/agent/{session}/runs/{runs[0]['runId']}", params={"wait": wait})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request" and answer.json()["field"] == "wait"


def events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """The stream's events, each its fields with `data` parsed (comments skipped)."""
    fields: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if fields:
                yield fields | {"data": json.loads(fields["data"])}
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


def test_the_stream_delivers_a_run_queued_after_connecting_and_resumes(api: httpx.Client, session: str) -> None:
    url = f"/api/agent/{session}/events"
    seen: list[dict[str, Any]] = []
    with api.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        first = next(stream)  # the transitions already there come first: createInstance's queued
        assert first["event"] == "transition" and first["data"]["status"] == "queued", first
        queued = queue_command(api, session, "echo streamed")
        for event in stream:
            if event["data"]["runId"] == queued["runId"]:
                seen.append(event)
                if event["data"]["status"] == "succeeded":
                    break
    assert [event["data"]["status"] for event in seen] == ["queued", "running", "succeeded"]
    assert [event["id"] for event in seen] == [f"{queued['runId']}:{seq}" for seq in (0, 1, 2)]
    assert seen[-1]["data"]["action"] == "executeCommands" and "error" not in seen[-1]["data"]

    # A client that reconnects after the running transition gets what came after it, nothing before.
    with api.stream("GET", url, headers={"Last-Event-ID": seen[1]["id"]}) as response:
        assert next(events(response))["id"] == seen[2]["id"]


@pytest.fixture
def stranger(stack: Stack) -> Iterator[httpx.Client]:
    keys = KeyStore(clients.firestore_client(Settings.from_env(stack.env)))
    key_id, key = keys.issue(f"stranger-{uuid.uuid4().hex[:6]}@example.com")
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        yield client
    keys.revoke(key_id)


def test_another_owners_session_is_404(api: httpx.Client, stranger: httpx.Client, session: str) -> None:
    answer = stranger.get(f"/api/agent/{session}/events")
    assert answer.status_code == 404 and answer.json()["error"] == "not_found", answer.text
    run_id = api.get(f"/api/agent/{session}").json()["runId"]
    assert stranger.get(f"/api/agent/{session}/runs/{run_id}", params={"wait": 5}).status_code == 404
