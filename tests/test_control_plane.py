"""The HTTP API against the emulators, through Starlette's test client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from control_plane.app import create_app
from control_plane.errors import ERRORS, INTERNAL
from control_plane.models import Preview
from control_plane.service import ControlPlane
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.names import REQUESTS_TOPIC, RUNS_COLLECTION
from vibesdk_gcp.params import MAX_COMMAND_BYTES
from vibesdk_gcp.registry import ACTIONS, PUBLIC_ACTIONS
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SessionChanges, StatusEvent, utcnow
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_BODY = AUTH | {"Content-Type": "application/json"}  # for raw `content=` bodies; `json=` sets it


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": settings.project,
            "VIBESDK_API_TOKEN": TOKEN,
            "VIBESDK_MAX_BODY_BYTES": "4096",
            "PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host or "",
            "FIRESTORE_EMULATOR_HOST": settings.firestore_emulator_host or "",
        }
    )


@pytest.fixture
def topic(api_settings: Settings) -> str:
    publisher = clients.publisher_client(api_settings)
    return publisher.create_topic(name=publisher.topic_path(api_settings.project, REQUESTS_TOPIC)).name


def client_for(settings: Settings, store: RunStore, storage: Storage) -> TestClient:
    plane = ControlPlane(store, Bus(clients.publisher_client(settings), settings.project), storage)
    return TestClient(create_app(settings, plane))


@pytest.fixture
def client(api_settings: Settings, store: RunStore, storage: Storage) -> Iterator[TestClient]:
    with client_for(api_settings, store, storage) as client:
        yield client


ROOMY_BODY_BYTES = 1 << 20  # well above MAX_COMMAND_BYTES: a command's own limit answers, not the body's


@pytest.fixture
def roomy_client(api_settings: Settings, store: RunStore, storage: Storage) -> Iterator[TestClient]:
    """The API with a body limit a command of over 128 KiB fits in, so that the command limit is reached."""
    assert ROOMY_BODY_BYTES > 2 * MAX_COMMAND_BYTES
    with client_for(replace(api_settings, max_body_bytes=ROOMY_BODY_BYTES), store, storage) as client:
        yield client


def test_create_session_queues_first_run(client: TestClient, topic: str, store: RunStore) -> None:
    response = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["action"] == "createInstance"
    assert response.headers["location"] == body["runUrl"]
    session = client.get(body["statusUrl"], headers=AUTH).json()
    assert session["status"] == "queued"
    assert session["latestRun"]["transitions"][0]["status"] == "queued"
    run = client.get(body["runUrl"], headers=AUTH).json()
    assert run["runId"] == body["runId"]


def test_queue_action_on_session(client: TestClient, topic: str) -> None:
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    response = client.post(
        f"/api/agent/{created['sessionId']}/actions",
        json={"action": "executeCommands", "params": {"commands": ["ls"]}},
        headers=AUTH,
    )
    assert response.status_code == 202
    session = client.get(created["statusUrl"], headers=AUTH).json()
    assert session["runId"] == response.json()["runId"]
    assert session["action"] == "executeCommands"


def test_missing_token(client: TestClient) -> None:
    assert client.post("/api/agent", json={"templateName": "x"}).status_code == 401
    assert client.get("/api/agent/x", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_invalid_json(client: TestClient) -> None:
    response = client.post("/api/agent", content=b"{not json", headers=JSON_BODY)
    assert response.status_code == 422
    assert "not valid JSON" in response.json()["detail"]


def test_missing_field_is_named(client: TestClient) -> None:
    response = client.post("/api/agent", json={"projectName": "x"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["field"] == "templateName"


def test_unknown_action(client: TestClient) -> None:
    response = client.post("/api/agent", json={"templateName": "x", "action": "launchRocket"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["field"] == "action"
    assert response.json()["detail"].startswith(
        "action: unknown action 'launchRocket'; the actions are getTemplateDetails,"
    )


ORDINARY_BAD_INPUT = {
    "long file name": ("writeFiles", {"files": [{"filePath": "a" * 300, "fileContents": "x"}]}, "name over 255 bytes"),
    "surrogate contents": ("writeFiles", {"files": [{"filePath": "a", "fileContents": "\ud800"}]}, "lone surrogate"),
    "surrogate command": ("executeCommands", {"commands": ["echo \ud800"]}, "lone surrogate"),
    "NUL command": ("executeCommands", {"commands": ["echo a\u0000b"]}, "NUL byte"),
    "huge command": ("executeCommands", {"commands": ["x" * (MAX_COMMAND_BYTES + 1)]}, "over 131072 bytes"),
    "bad env name": ("createInstance", {"templateName": "static-site", "envVars": {"A B": "x"}}, "envVars"),
}


@pytest.mark.parametrize("case", sorted(ORDINARY_BAD_INPUT))
def test_ordinary_bad_input_is_422_and_queues_nothing(
    roomy_client: TestClient, topic: str, store: RunStore, case: str
) -> None:
    client = roomy_client
    action, params, why = ORDINARY_BAD_INPUT[case]
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    before = len(store.runs_of(created["sessionId"]))
    # JSON text as a client sends it: escapes spell the surrogates and the NUL.
    body = json.dumps({"action": action, "params": params}, ensure_ascii=True)
    assert len(body) < ROOMY_BODY_BYTES  # every case reaches the parameters' checks, none the body limit's
    response = client.post(f"/api/agent/{created['sessionId']}/actions", content=body.encode(), headers=JSON_BODY)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request" and why in response.json()["detail"]
    assert len(store.runs_of(created["sessionId"])) == before  # no orphan queued run


def test_a_command_is_limited_to_128_kib(roomy_client: TestClient, topic: str, store: RunStore) -> None:
    """vibesdk_gcp/params.py's MAX_COMMAND_BYTES, at the API: the limit itself passes, one byte more is 422."""
    assert MAX_COMMAND_BYTES == 128 * 1024
    created = roomy_client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    actions = f"/api/agent/{created['sessionId']}/actions"

    def execute(command: str) -> Any:
        return roomy_client.post(
            actions, json={"action": "executeCommands", "params": {"commands": [command]}}, headers=AUTH
        )

    over = execute("x" * (MAX_COMMAND_BYTES + 1))
    assert over.status_code == 422, over.text
    assert over.json() == {
        "error": "invalid_request",
        "detail": "params.commands.0: Value error, is over 131072 bytes",
        "field": "params.commands.0",
    }
    # Bytes, not characters: 65,537 two-byte characters are 131,074 bytes.
    assert execute("\u00e9" * (MAX_COMMAND_BYTES // 2 + 1)).status_code == 422
    assert len(store.runs_of(created["sessionId"])) == 1  # only the createInstance run
    at_limit = execute("x" * MAX_COMMAND_BYTES)
    assert at_limit.status_code == 202, at_limit.text
    assert at_limit.json()["status"] == "queued" and at_limit.json()["action"] == "executeCommands"
    assert len(store.runs_of(created["sessionId"])) == 2


def test_surrogates_and_deep_nesting_anywhere_in_a_body_are_422(client: TestClient) -> None:
    surrogate = client.post("/api/agent", content=b'{"templateName": "\\ud800"}', headers=JSON_BODY)
    assert surrogate.status_code == 422 and "lone surrogate" in surrogate.json()["detail"]
    nested = client.post("/api/agent", content=b"[" * 2000 + b"]" * 2000, headers=JSON_BODY)
    assert nested.status_code == 422 and "nested too deeply" in nested.json()["detail"]


def test_invalid_params_are_named(client: TestClient, topic: str) -> None:
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    response = client.post(
        f"/api/agent/{created['sessionId']}/actions", json={"action": "executeCommands", "params": {}}, headers=AUTH
    )
    assert response.status_code == 422
    assert "params.commands" in response.json()["detail"]


def test_body_over_limit(client: TestClient) -> None:
    response = client.post("/api/agent", content=b"x" * 5000, headers=JSON_BODY)
    assert response.status_code == 413


def test_unknown_session_and_run(client: TestClient, topic: str) -> None:
    assert client.get("/api/agent/nope", headers=AUTH).status_code == 404
    assert client.get("/api/agent/nope/preview", headers=AUTH).status_code == 404
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    assert client.get(f"/api/agent/{created['sessionId']}/runs/nope", headers=AUTH).status_code == 404
    response = client.post("/api/agent/nope/actions", json={"action": "getLogs"}, headers=AUTH)
    assert response.status_code == 404
    # Ids Firestore itself refuses (reserved ones) are runs that cannot exist, not an outage.
    for bad in ("__main__", "__x__"):
        assert client.get(f"/api/agent/{created['sessionId']}/runs/{bad}", headers=AUTH).status_code == 404
    assert client.get("/api/agent/__name__", headers=AUTH).status_code == 404


def test_publish_failure_answers_503_and_ends_the_run(client: TestClient, store: RunStore) -> None:
    # No topic exists in this project, so the publish fails as it would with Pub/Sub down.
    response = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH)
    assert response.status_code == 503
    assert "could not publish" in response.json()["detail"]
    sessions = list(store._client.collection(RUNS_COLLECTION).stream())
    assert len(sessions) == 1
    assert sessions[0].to_dict()["status"] == "failed"


def _finish(store: RunStore, session_id: str, run_id: str, status: str, session: SessionChanges | None = None) -> None:
    store.apply(
        StatusEvent(
            eventId="e",
            sessionId=session_id,
            runId=run_id,
            seq=2,
            status=status,
            time=utcnow(),
            session=session,
            error="template missing" if status == "failed" else None,
        )
    )


def test_preview_follows_the_instance(client: TestClient, topic: str, store: RunStore) -> None:
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    preview = f"/api/agent/{created['sessionId']}/preview"
    creating = client.get(preview, headers=AUTH)
    assert creating.status_code == 202 and creating.json()["state"] == "creating"
    _finish(store, created["sessionId"], created["runId"], "succeeded", SessionChanges(instanceId="i-1"))
    response = client.get(preview, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["instanceId"] == "i-1"
    assert response.json()["state"] == "ready"


def test_preview_of_failed_instance(client: TestClient, topic: str, store: RunStore) -> None:
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    _finish(store, created["sessionId"], created["runId"], "failed")
    response = client.get(f"/api/agent/{created['sessionId']}/preview", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["message"] == "template missing"
    # The body the document gives a 409: the preview, failed.
    assert Preview.model_validate(response.json()).state == "failed"
    documented = client.get("/openapi.json").json()["paths"]["/api/agent/{sessionId}/preview"]["get"]
    assert documented["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/Preview")


def test_healthz_and_openapi_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    document = client.get("/openapi.json").json()
    assert "/api/agent/{sessionId}/preview" in document["paths"]
    assert "CreateSession" in document["components"]["schemas"]


def test_unknown_route_is_json(client: TestClient) -> None:
    response = client.get("/nothing")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_a_method_not_allowed_says_which_are(client: TestClient) -> None:
    """RFC 9110: a 405 carries Allow, listing every method of the path (two routes share this one)."""
    response = client.request("TRACE", "/api/agent", headers=AUTH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert response.json()["error"] == "method_not_allowed"
    assert client.put("/healthz").headers["allow"] == "GET, HEAD"
    assert client.put("/static/dashboard.js").headers["allow"] == "GET, HEAD"  # inside the static files' mount


def test_an_unexpected_error_is_answered_in_the_same_shape_with_the_security_headers(
    api_settings: Settings, store: RunStore, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane = ControlPlane(store, Bus(clients.publisher_client(api_settings), api_settings.project), storage)

    def broken(owner: str) -> None:
        raise KeyError("a defect")

    monkeypatch.setattr(plane, "sessions", broken)
    with TestClient(create_app(api_settings, plane), raise_server_exceptions=False) as client:
        response = client.get("/api/agent", headers=AUTH)
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "detail": "an internal error; it is logged"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_the_document_gives_each_action_its_params(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    variants = [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["QueueAction"]["oneOf"]]
    assert variants == [f"QueueAction_{name}" for name in PUBLIC_ACTIONS]
    execute = schemas["QueueAction_executeCommands"]
    assert execute["properties"]["params"] == {"$ref": "#/components/schemas/ExecuteCommandsParams"}
    assert execute["required"] == ["action", "params"]  # its params need commands: {} is refused
    assert "params" not in schemas["QueueAction_getInstanceStatus"]["required"]
    # CreateSession's action defaults to createInstance: that variant alone may leave it out.
    create = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["CreateSession"]["oneOf"]}
    assert [name for name in sorted(create) if "action" not in schemas[name]["required"]] == [
        "CreateSession_createInstance"
    ]
    # A succeeded run's result is its action's result model (or where it was spilled).
    results = {
        case["if"]["properties"]["action"]["const"]: case["then"]["properties"]["result"]["anyOf"][0]["$ref"]
        for case in schemas["Run"]["allOf"]
    }
    assert results == {name: f"#/components/schemas/{spec.result.__name__}" for name, spec in ACTIONS.items()}


def test_a_queued_answer_links_to_its_run(client: TestClient) -> None:
    created = client.get("/openapi.json").json()["paths"]["/api/agent"]["post"]["responses"]["202"]
    assert created["links"]["get_run"]["parameters"] == {
        "sessionId": "$response.body#/sessionId",
        "runId": "$response.body#/runId",
    }


def test_every_error_code_is_in_the_api_doc() -> None:
    table = (Path(__file__).resolve().parents[1] / "docs" / "API.md").read_text()
    for status, code in [*ERRORS.values(), INTERNAL, (405, "method_not_allowed")]:
        assert f"| {status} | `{code}` |" in table, code


def test_a_body_trickled_in_times_out(api_settings: Settings, store: RunStore, storage: Storage) -> None:
    """A client that sends its headers and then nothing would hold a worker for ever: 408."""
    slow = replace(api_settings, body_timeout_seconds=0.3)
    app = create_app(slow, ControlPlane(store, Bus(clients.publisher_client(slow), slow.project), storage))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/agent",
        "raw_path": b"/api/agent",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", f"Bearer {TOKEN}".encode()),
            (b"content-length", b"100"),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8080),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    assert sent[0]["status"] == 408


def test_full_log_names_only_the_sessions_own_logs(client: TestClient, topic: str, storage: Storage) -> None:
    created = client.post("/api/agent", json={"templateName": "static-site"}, headers=AUTH).json()
    session = created["sessionId"]
    storage.write("vibesdk-logs", f"{session}/logs/0001-run-0.stdout", b"whole output", "text/plain")
    storage.write("vibesdk-logs", "other-session/logs/0001-run-0.stdout", b"not yours", "text/plain")
    own = client.get(
        f"/api/agent/{session}/log", params={"name": f"gs://vibesdk-logs/{session}/logs/0001-run-0"}, headers=AUTH
    )
    assert (own.status_code, own.text) == (200, "whole output")
    for name in (
        "gs://vibesdk-logs/other-session/logs/0001-run-0",
        f"gs://vibesdk-logs/{session}/logs/../../other-session/logs/0001-run-0",
        f"gs://vibesdk-logs/{session}/logs/",
        "0001-run-0",
    ):
        response = client.get(f"/api/agent/{session}/log", params={"name": name}, headers=AUTH)
        assert response.status_code == 404, name
    assert (
        client.get(
            f"/api/agent/{session}/log",
            params={"name": f"gs://vibesdk-logs/{session}/logs/0001-run-0", "stream": "x"},
            headers=AUTH,
        ).status_code
        == 404
    )
