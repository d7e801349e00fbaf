"""/runner through Starlette's test client, against the emulators; a stand-in for the sandbox job ends
the runs it queues with the results each test gives (tests/e2e/test_runner.py drives the real job)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from control_plane.app import create_app
from control_plane.keys import KeyStore
from control_plane.models import QueueAction, Run
from control_plane.runner import commands_budget, run_budget
from control_plane.service import ControlPlane
from eventarc.definitions import SANDBOX_JOB_TRIGGER
from functions.actions.build import worker_config
from tests.test_infra import module_text
from tests.vibesdk_schemas import PORT, UPSTREAM, assert_valid
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.errors import ServiceUnavailable, TooMany, VibsdkError
from vibesdk_gcp.names import LOGS_BUCKET, REQUESTS_TOPIC
from vibesdk_gcp.params import ExecuteCommandsParams, NoParams
from vibesdk_gcp.runs import RunDoc, RunStore
from vibesdk_gcp.schemas import SessionChanges, StatusEvent, utcnow
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.state import SEQ_TERMINAL
from vibesdk_gcp.storage import Storage

TOKEN = "test-token"
# What RemoteSandboxServiceClient sends with every request, body-less ones included.
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "x-session-id": "agent-session-1"}
# An ended run: (status, result, error, session changes), made from the queued run.
Ending = Callable[[RunDoc], tuple[str, dict[str, Any] | None, str | None, SessionChanges | None]]


def succeeded(result: dict[str, Any] | None = None) -> Ending:
    return lambda run: ("succeeded", result or {}, None, None)


def failed(error: str, result: dict[str, Any] | None = None) -> Ending:
    return lambda run: ("failed", result, error, None)


def CREATED(run: RunDoc) -> tuple[str, dict[str, Any] | None, str | None, SessionChanges | None]:
    return "succeeded", {"instanceId": run.sessionId}, None, SessionChanges(instanceId=run.sessionId)


def SHUT_DOWN(run: RunDoc) -> tuple[str, dict[str, Any] | None, str | None, SessionChanges | None]:
    return "succeeded", {"shutdown": True}, None, SessionChanges(instanceId=None, preview=None)


class JobStandIn:
    """Ends each queued run whose action it has an ending for, as the job's status events would."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.endings: dict[str, Ending] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True)

    def __enter__(self) -> JobStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _work(self) -> None:
        while not self._stop.wait(0.05):
            # Firestore refused (a write that raced the runner's, say): the next round tries again.
            with contextlib.suppress(VibsdkError):
                self._end_runs()

    def _end_runs(self) -> None:
        for run in self.store.unfinished():
            ending = self.endings.get(run.action)
            if ending is None:
                continue
            status, result, error, session = ending(run)
            self.store.apply(
                StatusEvent(
                    eventId=f"stand-in-{run.runId}",
                    sessionId=run.sessionId,
                    runId=run.runId,
                    seq=SEQ_TERMINAL,
                    status=status,  # type: ignore[arg-type]
                    time=utcnow(),
                    startedAt=utcnow(),
                    result=result,
                    error=error,
                    session=session,
                )
            )


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": settings.project,
            "VIBESDK_API_TOKEN": TOKEN,
            "VIBESDK_PUBLIC_URL": "https://cp.example",
            "VIBESDK_PREVIEW_DOMAIN": "previews.example",
            "PUBSUB_EMULATOR_HOST": settings.pubsub_emulator_host or "",
            "FIRESTORE_EMULATOR_HOST": settings.firestore_emulator_host or "",
            "VIBESDK_COMMAND_TIMEOUT_SECONDS": "1",  # the budget of a command sent without a timeout
            "VIBESDK_MAX_ACTION_SECONDS": "20",  # a run nothing ends fails its test soon
        }
    )


@pytest.fixture
def plane(api_settings: Settings, store: RunStore, storage: Storage) -> ControlPlane:
    publisher = clients.publisher_client(api_settings)
    publisher.create_topic(name=publisher.topic_path(api_settings.project, REQUESTS_TOPIC))
    return ControlPlane(store, Bus(publisher, api_settings.project), storage, settings=api_settings)


@pytest.fixture
def client(api_settings: Settings, plane: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, plane)) as client:
        yield client


@pytest.fixture
def job(store: RunStore) -> Iterator[JobStandIn]:
    with JobStandIn(store) as job:
        yield job


@pytest.fixture
def queued(plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> list[QueueAction]:
    """The actions the runner queues, as it queued them."""
    seen: list[QueueAction] = []
    queue_action = plane.queue_action

    def spy(owner: str, session_id: str, body: QueueAction, egress: bool = False) -> Any:
        seen.append(body)
        return queue_action(owner, session_id, body, egress=egress)

    monkeypatch.setattr(plane, "queue_action", spy)
    return seen


def create(client: TestClient, job: JobStandIn, body: dict[str, Any] | None = None) -> str:
    job.endings["createInstance"] = CREATED
    made = client.post(
        "/runner/instances", json=body or {"templateName": "react-vite", "projectName": "demo"}, headers=HEADERS
    )
    assert made.status_code == 200, made.text
    instance = str(made.json()["runId"])
    deadline = time.monotonic() + 20
    while not client.get(f"/runner/instances/{instance}/status", headers=HEADERS).json()["isHealthy"]:
        assert time.monotonic() < deadline, "the instance never became healthy"
        time.sleep(0.05)
    return instance


def test_create_answers_at_once_and_status_follows_the_create_run(
    client: TestClient, job: JobStandIn, store: RunStore
) -> None:
    made = client.post(
        "/runner/instances", json={"templateName": "react-vite", "projectName": "v1-demo"}, headers=HEADERS
    )
    assert made.status_code == 200
    bootstrap = made.json()
    assert_valid("BootstrapResponse", bootstrap)
    instance = bootstrap["runId"]
    assert bootstrap["success"] is True
    # Known from the start: the preview's own host (VibSDK keeps it), and the path form on the control plane.
    assert re.fullmatch(r"https://[0-9a-f]{32}-[0-9a-f]{24}\.previews\.example/", bootstrap["previewURL"])
    assert bootstrap["tunnelURL"].startswith(f"https://cp.example/preview/{bootstrap['runId']}/")
    recorded = store.get_session(instance)
    assert (recorded.agentId, recorded.templateName, recorded.projectName) == (
        "agent-session-1",
        "react-vite",
        "v1-demo",
    )

    pending = client.get(f"/runner/instances/{instance}/status", headers=HEADERS).json()
    assert (pending["success"], pending["pending"], pending["isHealthy"]) == (True, True, False)
    assert_valid("BootstrapStatusResponse", pending)
    details = client.get(f"/runner/instances/{instance}", headers=HEADERS).json()
    assert details["success"] is True and details["instance"]["templateName"] == "react-vite"
    assert_valid("GetInstanceResponse", details)

    job.endings["createInstance"] = CREATED
    deadline = time.monotonic() + 20
    while not (status := client.get(f"/runner/instances/{instance}/status", headers=HEADERS).json())["isHealthy"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status == status | {"success": True, "pending": False}
    assert_valid("BootstrapStatusResponse", status)
    listed = client.get("/runner/instances", headers=HEADERS).json()
    assert [item["runId"] for item in listed["instances"]] == [instance] and listed["count"] == 1
    assert_valid("ListInstancesResponse", listed)


def test_a_failed_create_is_unhealthy_with_its_error(client: TestClient, job: JobStandIn) -> None:
    job.endings["createInstance"] = failed("template 'nope' does not exist")
    instance = client.post(
        "/runner/instances", json={"templateName": "nope", "projectName": "p"}, headers=HEADERS
    ).json()["runId"]
    deadline = time.monotonic() + 20
    while (status := client.get(f"/runner/instances/{instance}/status", headers=HEADERS).json())["pending"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (status["success"], status["isHealthy"]) == (False, False)
    assert "template 'nope' does not exist" in status["error"]
    assert_valid("BootstrapStatusResponse", status)


def test_acting_calls_answer_when_their_run_ends(
    client: TestClient, job: JobStandIn, queued: list[QueueAction]
) -> None:
    instance = create(client, job)
    base = f"/runner/instances/{instance}"
    endings: list[tuple[str, Ending]] = [
        ("writeFiles", succeeded({"files": [{"file": "a.txt", "success": True}], "uploaded": 1})),
        ("getFiles", succeeded({"files": [{"filePath": "a.txt", "fileContents": "hi"}], "missing": ["b c.txt"]})),
        (
            "executeCommands",
            failed(
                "command 'false' exited 1",
                {"results": [{"command": "false", "success": False, "exitCode": 1, "output": "", "error": "x"}]},
            ),
        ),
        ("getInstanceErrors", succeeded({"errors": [], "hasErrors": False})),
        ("clearInstanceErrors", succeeded({"success": True, "cleared": 0})),
        ("runStaticAnalysisCode", succeeded({"success": True, "lint": {"issues": []}, "typecheck": {"issues": []}})),
        ("getLogs", succeeded({"logs": {"stdout": "o", "stderr": "e"}})),
        ("deployInstance", succeeded({"previewUrl": "https://p.example/", "files": 1})),
        ("shutdownInstance", SHUT_DOWN),
    ]
    job.endings |= dict(endings)
    calls = [
        ("WriteFilesResponse", "POST", "/files", {"files": [{"filePath": "a.txt", "fileContents": "hi"}]}),
        # encodeURIComponent(JSON.stringify(paths)), as getFiles sends it
        ("GetFilesResponse", "GET", "/files?filePaths=" + quote(json.dumps(["a.txt", "b c.txt"]), safe=""), None),
        ("ExecuteCommandsResponse", "POST", "/commands", {"commands": ["false"], "timeout": 30000}),
        ("RuntimeErrorResponse", "GET", "/errors", None),
        ("ClearErrorsResponse", "DELETE", "/errors", None),
        ("StaticAnalysisResponse", "GET", "/analysis?files=src/App.tsx,src/main.tsx", None),
        ("GetLogsResponse", "GET", "/logs?reset=true&duration=30", None),
        ("DeploymentResult", "POST", "/deploy", None),
        ("ShutdownResponse", "DELETE", "", None),
    ]
    got = {}
    for schema, method, path, body in calls:
        response = client.request(method, base + path, headers=HEADERS, content=json.dumps(body) if body else None)
        assert response.status_code == 200, (path, response.text)
        got[schema] = response.json()
        assert_valid(schema, got[schema])
    assert got["GetFilesResponse"]["errors"] == [{"file": "b c.txt", "error": "File not found"}]
    ran = got["ExecuteCommandsResponse"]  # as VibSDK's runner answers: the command failed, not the call
    assert ran["success"] is True and ran["results"][0]["success"] is False and ran["results"][0]["exitCode"] == 1
    assert got["DeploymentResult"]["deployedUrl"] == "https://p.example/"
    sent = {body.action: body.params.model_dump(exclude_unset=True) for body in queued}
    assert sent["getFiles"] == {"filePaths": ["a.txt", "b c.txt"]}
    assert sent["executeCommands"] == {"commands": ["false"], "timeout": 30, "allowNetwork": True}
    assert sent["runStaticAnalysisCode"] == {"lintFiles": ["src/App.tsx", "src/main.tsx"]}
    assert sent["getLogs"] == {"onlyRecent": True, "durationSeconds": 30}

    gone = client.get(f"{base}/status", headers=HEADERS).json()
    assert (gone["success"], gone["isHealthy"], gone["error"]) == (False, False, f"instance {instance} was shut down")
    assert_valid("BootstrapStatusResponse", gone)
    assert_valid("GetInstanceResponse", client.get(base, headers=HEADERS).json())


def test_a_run_past_its_budget_is_504_naming_where_to_follow_it(
    client: TestClient, job: JobStandIn, store: RunStore
) -> None:
    instance = create(client, job)
    began = time.monotonic()
    # No timeout: the default command timeout, 1 s here, is the budget; nothing ends the run.
    response = client.post(f"/runner/instances/{instance}/commands", json={"commands": ["sleep 5"]}, headers=HEADERS)
    assert 1 <= time.monotonic() - began < 10
    assert response.status_code == 504 and response.headers["content-type"].startswith("text/plain")
    run_id = re.search(r"/api/agent/[^/]+/runs/([^ .]+)", response.text)
    assert run_id, response.text
    assert f"/api/agent/{instance}/runs/" in response.text and response.text.count(".") >= 1
    assert store.get_run(instance, run_id.group(1)).status == "queued"  # it goes on


def test_a_queued_run_that_cannot_be_waited_for_is_504_never_429(
    client: TestClient, job: JobStandIn, plane: ControlPlane, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the owner's waits, the run is queued already: a 429 would have VibSDK queue it again."""
    instance = create(client, job)

    async def over_the_bound(*args: object) -> Run:
        raise TooMany("32 waits are open already", 1)

    monkeypatch.setattr(plane, "run_when_terminal", over_the_bound)
    response = client.post(f"/runner/instances/{instance}/commands", json={"commands": ["ls"]}, headers=HEADERS)
    assert response.status_code == 504 and "32 waits are open already" in response.text, response.text
    run_id = re.search(r"/api/agent/[^/]+/runs/([^ .]+)", response.text)
    assert run_id and store.get_run(instance, run_id.group(1)).action == "executeCommands"


def test_the_budgets_sum_command_timeouts_within_the_action_bound(api_settings: Settings) -> None:
    params = ExecuteCommandsParams(commands=["a", "b", "c"], timeout=100)
    assert commands_budget(api_settings, params) == min(300, api_settings.max_action_seconds)
    assert commands_budget(api_settings, ExecuteCommandsParams(commands=["a", "b"])) == 2  # the default, 1 s each
    many = ExecuteCommandsParams(commands=["a"] * 100, timeout=3600)
    assert commands_budget(api_settings, many) == api_settings.max_action_seconds


def test_cloud_runs_request_timeout_outlasts_the_longest_budget() -> None:
    """Cloud Run cuts a request at its timeout (504): every budget must end before it."""
    text = module_text("control_plane")
    deadline = SANDBOX_JOB_TRIGGER.tuned.ack_deadline_seconds
    assert "timeout_seconds = local.definitions.trigger.tuned_subscription.ack_deadline_seconds" in text
    bound = re.search(
        r"VIBESDK_MAX_ACTION_SECONDS = tostring\(local\.definitions\.trigger\.tuned_subscription\.ack_deadline_seconds - (\d+)\)",
        text,
    )
    assert bound, "the control plane must get the job's bound on an action"
    settings = Settings(max_action_seconds=deadline - int(bound.group(1)))
    longest = ExecuteCommandsParams(commands=["a"] * 1000, timeout=3600)
    assert max(run_budget(settings, longest), run_budget(settings, NoParams())) < deadline


def test_errors_are_one_sentence_of_text(client: TestClient, job: JobStandIn) -> None:
    missing = client.get("/runner/instances/no-such-instance/status", headers=HEADERS)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")
    assert missing.text == "session 'no-such-instance' does not exist."
    unauthenticated = client.get("/runner/instances", headers={"Content-Type": "application/json"})
    assert unauthenticated.status_code == 401 and unauthenticated.headers["content-type"].startswith("text/plain")
    bad = client.post("/runner/instances", json={"templateName": "react-vite", "projectName": 5}, headers=HEADERS)
    assert bad.status_code == 422 and bad.text.startswith("projectName: ") and "\n" not in bad.text
    instance = create(client, job)
    bad_files = client.post(f"/runner/instances/{instance}/files", json={"files": [{"filePath": "a"}]}, headers=HEADERS)
    assert bad_files.status_code == 422 and bad_files.text.startswith("files.0.fileContents: ")
    bad_duration = client.get(f"/runner/instances/{instance}/logs?duration=-5", headers=HEADERS)
    assert bad_duration.status_code == 422 and bad_duration.text.startswith("duration: ")
    bad_paths = client.get(f"/runner/instances/{instance}/files?filePaths=not-json", headers=HEADERS)
    assert bad_paths.status_code == 422 and bad_paths.text.startswith("filePaths: ")
    neither = client.post("/runner/instances", json={"projectName": "p"}, headers=HEADERS)
    assert neither.status_code == 422 and "templateName or files" in neither.text
    endless = client.post(
        f"/runner/instances/{instance}/commands", content='{"commands": ["ls"], "timeout": Infinity}', headers=HEADERS
    )
    assert endless.status_code == 422 and endless.text.startswith("timeout: ")
    text_body = client.post(
        f"/runner/instances/{instance}/deploy", content="{}", headers=HEADERS | {"Content-Type": "text/plain"}
    )
    assert text_body.status_code == 415 and text_body.headers["content-type"].startswith("text/plain")
    no_route = client.get("/runner/nowhere", headers=HEADERS)
    assert no_route.status_code == 404 and no_route.text == "no route for GET /runner/nowhere."
    # /api keeps its JSON errors.
    assert client.get("/api/agent/no-such-instance", headers=HEADERS).json()["error"] == "not_found"


def test_another_owners_instance_is_a_404_like_a_missing_one(
    client: TestClient, job: JobStandIn, api_settings: Settings
) -> None:
    instance = create(client, job)
    _, key = KeyStore(clients.firestore_client(api_settings)).issue("mallory@example.com")
    other = HEADERS | {"Authorization": f"Bearer {key}"}
    for method, path in [
        ("GET", ""),
        ("GET", "/status"),
        ("DELETE", ""),
        ("POST", "/deploy"),
        ("POST", "/github/push"),
    ]:
        response = client.request(method, f"/runner/instances/{instance}{path}", headers=other)
        assert (response.status_code, response.text) == (404, f"session {instance!r} does not exist."), path
    assert client.get("/runner/instances", headers=other).json() == {"success": True, "instances": [], "count": 0}


def test_rename_answers_true_and_later_runs_carry_the_name(
    client: TestClient, job: JobStandIn, store: RunStore
) -> None:
    instance = create(client, job)
    renamed = client.post(f"/runner/instances/{instance}/name", json={"projectName": "new-name"}, headers=HEADERS)
    assert renamed.status_code == 200 and renamed.json() is True
    assert store.get_session(instance).projectName == "new-name"


def test_template_details_run_in_a_session_of_their_own(client: TestClient, job: JobStandIn) -> None:
    job.endings["getTemplateDetails"] = succeeded(
        {
            "templateDetails": {
                "name": "react-vite",
                "fileTree": {"path": "", "type": "directory"},
                "allFiles": {"a": "b"},
            }
        }
    )
    found = client.get("/runner/templates/react-vite", headers=HEADERS)
    assert found.status_code == 200
    assert found.json()["templateDetails"]["files"] == [{"filePath": "a", "fileContents": "b"}]
    assert_valid("TemplateDetailsResponse", found.json(), (PORT, UPSTREAM))
    bad = client.get("/runner/templates/not%20a%20name", headers=HEADERS)
    assert bad.status_code == 422 and bad.text.startswith("templateName: ")


def test_github_push_is_refused_as_unsupported(client: TestClient, job: JobStandIn) -> None:
    instance = create(client, job)
    pushed = client.post(
        f"/runner/instances/{instance}/github/push", json={"request": {}, "files": []}, headers=HEADERS
    )
    assert pushed.status_code == 200 and pushed.json()["success"] is False
    assert_valid("GitHubPushResponse", pushed.json())


def test_a_wrangler_config_naming_a_main_script_is_a_worker(tmp_path: Path) -> None:
    assert worker_config(tmp_path) is None
    (tmp_path / "wrangler.toml").write_text('name = "site"\ncompatibility_date = "2025-01-01"\n')
    assert worker_config(tmp_path) is None  # static assets only
    (tmp_path / "wrangler.toml").write_text('name = "site"\nmain = "src/index.ts"\n')
    assert worker_config(tmp_path) == "wrangler.toml"
    (tmp_path / "wrangler.jsonc").write_text('{\n  // the Worker\n  "main": "src/index.ts"\n}\n')
    assert worker_config(tmp_path) == "wrangler.jsonc"


def test_limits_answer_as_text_with_their_retry_after(
    api_settings: Settings, plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    with TestClient(create_app(replace(api_settings, requests_per_minute=1, max_body_bytes=100), plane)) as client:
        big = client.post("/runner/instances", json={"templateName": "x" * 200}, headers=HEADERS)
        assert big.status_code == 413 and big.headers["content-type"].startswith("text/plain"), big.text
        over = client.get("/runner/instances", headers=HEADERS)
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        assert over.text == "request rate over the limit."

    def unreachable(request: object) -> str:
        raise ServiceUnavailable("Pub/Sub is unavailable: test")

    monkeypatch.setattr(plane._bus, "publish_request", unreachable)
    with TestClient(create_app(api_settings, plane)) as client:
        down = client.post("/runner/instances", json={"templateName": "react-vite"}, headers=HEADERS)
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert down.text == "Pub/Sub is unavailable: test."


def test_a_result_too_big_for_firestore_is_read_back_whole(
    client: TestClient, job: JobStandIn, storage: Storage
) -> None:
    instance = create(client, job)
    whole = {"files": [{"filePath": f"f{n}.txt", "fileContents": "x" * 1000} for n in range(300)], "missing": []}

    def spilled(run: RunDoc) -> tuple[str, dict[str, Any] | None, str | None, SessionChanges | None]:
        # As functions/job.py keeps a result over 256 KiB: in the logs bucket, and a pointer in the run.
        name = f"{run.sessionId}/results/{run.runId}.json"
        storage.write(LOGS_BUCKET, name, json.dumps(whole).encode(), "application/json")
        return (
            "succeeded",
            {"resultObject": f"gs://{LOGS_BUCKET}/{name}", "resultBytes": 1, "keys": ["files"]},
            None,
            None,
        )

    job.endings["getFiles"] = spilled
    found = client.get(f"/runner/instances/{instance}/files", headers=HEADERS).json()
    assert len(found["files"]) == 300 and found["files"][0] == {"filePath": "f0.txt", "fileContents": "x" * 1000}
    assert_valid("GetFilesResponse", found)
