"""End to end: HTTP API -> Pub/Sub -> Eventarc router -> sandbox job -> status topic -> recorder -> Firestore."""

from __future__ import annotations

import base64
import json
import select
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.keys import KeyStore
from devstack.stack import Stack
from functions.deadletters import DeadLetterBox
from tests.e2e.conftest import TOKEN, wait_for_run, wait_until
from vibesdk_gcp import clients
from vibesdk_gcp.names import STATUS_TOPIC
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

pytestmark = pytest.mark.e2e


def statuses(run: dict[str, Any]) -> list[str]:
    return [t["status"] for t in run["transitions"]]


def test_create_session_and_run_a_command(api: httpx.Client) -> None:
    started = time.monotonic()
    created = api.post("/api/agent", json={"templateName": "static-site", "projectName": "demo"})
    assert created.status_code == 202, created.text
    first = wait_for_run(api, created.json()["runUrl"])
    assert first["status"] == "succeeded", first
    assert statuses(first) == ["queued", "running", "succeeded"]
    print(f"createInstance: POST to succeeded in {time.monotonic() - started:.2f} s")

    session_id = created.json()["sessionId"]
    queued = api.post(
        f"/api/agent/{session_id}/actions",
        json={
            "action": "executeCommands",
            "params": {"commands": ["npm run build --silent", "ls dist"]},
        },
    )
    assert queued.status_code == 202, queued.text
    second = wait_for_run(api, queued.json()["runUrl"])
    assert second["status"] == "succeeded", second
    assert statuses(second) == ["queued", "running", "succeeded"]
    assert second["result"]["results"][1]["output"].split() == ["index.html", "style.css"]
    assert [t["seq"] for t in second["transitions"]] == [0, 1, 2]

    session = api.get(f"/api/agent/{session_id}").json()
    assert session["runId"] == queued.json()["runId"] and session["status"] == "succeeded"
    assert api.get(f"/api/agent/{session_id}/preview").status_code == 200


def test_failed_command_is_reported(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "python-app"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    queued = api.post(
        f"/api/agent/{created['sessionId']}/actions",
        json={
            "action": "executeCommands",
            "params": {"commands": ["python3 -c 'raise SystemExit(\"no such thing\")'"]},
        },
    ).json()
    run = wait_for_run(api, queued["runUrl"])
    assert run["status"] == "failed"
    assert "exited with code 1" in run["error"] and "no such thing" in run["error"]


def test_unknown_template_fails_the_instance(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "no-such-template"}).json()
    run = wait_for_run(api, created["runUrl"])
    assert run["status"] == "failed" and "does not exist" in run["error"]
    assert api.get(f"/api/agent/{created['sessionId']}/preview").status_code == 409


def _settings(stack: Stack) -> Settings:
    return Settings.from_env(stack.env)


def _queued_run(stack: Stack, action: str = "getTemplateDetails") -> SandboxRequest:
    request = SandboxRequest(
        sessionId=str(uuid.uuid4()),
        runId=str(uuid.uuid4()),
        action=action,
        templateName="node-app",
        issuedAt=utcnow(),
        owner="local",
    )
    RunStore(clients.firestore_client(_settings(stack))).queue_run(request, new_session=True)
    return request


def _pubsub_message(request: SandboxRequest) -> dict[str, Any]:
    return {
        "data": base64.b64encode(request.model_dump_json().encode()).decode(),
        "attributes": request.attributes(),
        "messageId": str(uuid.uuid4().int)[:16],
        "publishTime": "2026-01-01T00:00:00Z",
    }


def test_job_accepts_structured_mode(stack: Stack, api: httpx.Client) -> None:
    request = _queued_run(stack)
    event = {
        "specversion": "1.0",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "source": f"//pubsub.googleapis.com/projects/{stack.project}/topics/vibesdk-sandbox-requests",
        "id": "structured-1",
        "datacontenttype": "application/json",
        "data": {"subscription": "projects/p/subscriptions/s", "message": _pubsub_message(request)},
    }
    response = httpx.post(
        stack.ports.url("sandbox_job"),
        content=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert response.status_code == 200, response.text
    run = wait_for_run(api, f"/api/agent/{request.sessionId}/runs/{request.runId}")
    assert run["status"] == "succeeded"
    assert run["result"]["templateDetails"]["name"] == "node-app"


def test_job_accepts_raw_push_envelope(stack: Stack, api: httpx.Client) -> None:
    request = _queued_run(stack)
    body = {"subscription": "projects/p/subscriptions/s", "message": _pubsub_message(request)}
    response = httpx.post(
        stack.ports.url("sandbox_job") + f"/projects/{stack.project}/topics/vibesdk-sandbox-requests", json=body
    )
    assert response.status_code == 200, response.text
    assert wait_for_run(api, f"/api/agent/{request.sessionId}/runs/{request.runId}")["status"] == "succeeded"


def test_job_refuses_undecodable_delivery(stack: Stack) -> None:
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-id": "bad-1",
        "Content-Type": "application/json",
    }
    response = httpx.post(stack.ports.url("sandbox_job"), json={"message": {"data": "e30="}}, headers=headers)
    assert response.status_code == 400


def test_malformed_status_event_is_dead_lettered_and_replayable(stack: Stack) -> None:
    settings = _settings(stack)
    publisher = clients.publisher_client(settings)
    marker = str(uuid.uuid4())
    published = publisher.publish(
        publisher.topic_path(stack.project, STATUS_TOPIC), b"not json " + marker.encode()
    ).result()
    box = DeadLetterBox(settings)
    found = wait_until(
        lambda: next((letter for letter in box.peek() if marker.encode() in letter.data), None),
        "the malformed event on the dead-letter topic",
        every=0.5,
    )
    assert (found.original_id, found.source) == (published, STATUS_TOPIC)
    assert "not JSON" in found.reason
    # Replayed, it goes back to its topic (and, still malformed, comes back here once more).
    assert box.replay({published}) == [published]
    wait_until(
        lambda: next(
            (letter for letter in box.peek() if marker.encode() in letter.data and letter.original_id != published),
            None,
        ),
        "the replayed event, still malformed, back on the dead-letter topic",
        every=0.5,
    )


def test_no_secret_reaches_a_log_or_a_document(stack: Stack, api: httpx.Client) -> None:
    """A full run with a development token, an API key and a secret env var: none of them leaks."""
    settings = _settings(stack)
    keys = KeyStore(clients.firestore_client(settings))
    key_id, key = keys.issue("local")
    secret_value = f"s3cr3t-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}"}
    created = api.post(
        "/api/agent",
        json={"templateName": "python-app", "params": {"envVars": {"DB_PASSWORD": secret_value}}},
        headers=headers,
    ).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    queued = api.post(
        f"/api/agent/{created['sessionId']}/actions",
        headers=headers,
        json={
            "action": "executeCommands",
            "params": {"commands": ['test -n "$DB_PASSWORD"', "python3 -c 'raise SystemExit(3)'"]},
        },
    ).json()
    assert wait_for_run(api, queued["runUrl"])["status"] == "failed"
    keys.revoke(key_id)
    secrets = [key, key.split("_", 2)[2], secret_value, TOKEN]  # vsk_<id>_<secret>; the secret may hold "_"
    logs = "\n".join(path.read_text(errors="replace") for path in Path(stack.supervisor.log_dir).glob("*.log"))
    assert [secret for secret in secrets if secret in logs] == []
    firestore = clients.firestore_client(settings)
    documents = [json.dumps(doc.to_dict(), default=str) for doc in firestore.collection("sandboxRuns").stream()]
    documents += [json.dumps(doc.to_dict(), default=str) for doc in firestore.collection_group("runs").stream()]
    documents += [json.dumps(doc.to_dict(), default=str) for doc in firestore.collection("apiKeys").stream()]
    assert [secret for secret in secrets if any(secret in document for document in documents)] == []


def test_a_command_with_network_reads_nothing_of_the_stack(api: httpx.Client, stack: Stack) -> None:
    """The attack from the sandbox issue, as a user would try it: now a refusal, not every owner's runs."""
    created = api.post("/api/agent", json={"templateName": "python-app"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    documents = f"http://127.0.0.1:{stack.ports.firestore}/v1/projects/{stack.project}/databases/(default)/documents/sandboxRuns"
    command = f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{documents}').read())\""
    queued = api.post(
        f"/api/agent/{created['sessionId']}/actions",
        json={"action": "executeCommands", "params": {"commands": [command], "allowNetwork": True}},
    ).json()
    run = wait_for_run(api, queued["runUrl"])
    assert run["status"] == "failed"
    said = run["result"]["results"][0]["output"] + run["result"]["results"][0]["error"]
    assert "egress refused" in said
    assert created["sessionId"] not in said and "documents" not in said.replace(documents, "")


def test_headers_trickled_in_are_cut_off(stack: Stack) -> None:
    """A client that sends a byte now and then would hold a connection for ever: 408, closed.

    A byte every 0.1 s, never the blank line that ends the headers: the connection is never idle
    (the stack's header timeout is 2 s), so only a bound on the headers as a whole can end it.
    """
    port = int(stack.api_url.rsplit(":", 1)[1])
    trickled = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Trickle: ")
        deadline = time.monotonic() + 60
        while not select.select([client], [], [], 0.1)[0]:  # nothing from the server yet: one more byte
            assert time.monotonic() < deadline, f"still connected after trickling {trickled} bytes for 60 s"
            try:
                client.sendall(b"a")
            except OSError:  # closed between two bytes: its answer is waiting
                break
            trickled += 1
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert trickled > 0  # cut off while it was still sending, not for falling silent
