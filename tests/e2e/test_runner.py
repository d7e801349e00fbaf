"""VibSDK's agent, both client versions, driving the real stack through /runner as DeploymentManager does.

`Runner` sends exactly what RemoteSandboxServiceClient sends (headers, encodings, bodies) and reads
the answers as it does: a non-2xx becomes `{success: false, error: <text>}`; every other answer is held
to that version's zod schema (tests/vibesdk_schemas.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from control_plane.keys import KeyStore
from devstack.stack import Stack
from tests.e2e.conftest import TOKEN
from tests.e2e.test_react_vite import PLANTED
from tests.vibesdk_schemas import PORT, UPSTREAM, problems
from vibesdk_gcp import clients
from vibesdk_gcp.settings import Settings

pytestmark = pytest.mark.e2e
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
# encodeURIComponent leaves these as they are.
URI_COMPONENT_SAFE = "-_.!~*'()"
WRANGLER = """{
  // A Worker with static assets, as VibSDK's templates are
  "name": "site",
  "main": "worker/index.ts",
  "assets": { "directory": "dist" }
}
"""


class Runner:
    """RemoteSandboxServiceClient of one version, for one agent session."""

    def __init__(self, stack: Stack, version: str, token: str = TOKEN) -> None:
        self.version = version
        self.http = httpx.Client(base_url=stack.api_url + "/runner", timeout=600)
        self.token = token
        self.session_id = f"agent-{uuid.uuid4().hex[:12]}"
        self.answers: list[str] = []

    def request(self, endpoint: str, method: str, schema: str, body: Any = None) -> Any:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.token}",
            "x-session-id": self.session_id,
        }
        # `body ? JSON.stringify(body) : undefined`
        response = self.http.request(method, endpoint, headers=headers, content=json.dumps(body) if body else None)
        if not response.is_success:
            return {"success": False, "error": response.text, "status": response.status_code}
        answer = response.json()
        found = problems(self.version, schema, answer)
        assert found == [], (endpoint, found, answer)
        self.answers.append(schema)
        return answer

    # The client's calls, by their names there.
    def create_instance(self, body: dict[str, Any]) -> Any:
        return self.request("/instances", "POST", "BootstrapResponse", body)

    def get_template_details(self, name: str) -> Any:
        return self.request(f"/templates/{name}", "GET", "TemplateDetailsResponse")

    def get_instance_status(self, instance: str) -> Any:
        return self.request(f"/instances/{instance}/status", "GET", "BootstrapStatusResponse")

    def get_instance_details(self, instance: str) -> Any:
        return self.request(f"/instances/{instance}", "GET", "GetInstanceResponse")

    def write_files(self, instance: str, files: list[dict[str, str]], commit_message: str | None = None) -> Any:
        body = {"files": files} | ({"commitMessage": commit_message} if commit_message else {})
        return self.request(f"/instances/{instance}/files", "POST", "WriteFilesResponse", body)

    def get_files(self, instance: str, paths: list[str] | None = None) -> Any:
        query = (
            f"?filePaths={quote(json.dumps(paths, separators=(',', ':')), safe=URI_COMPONENT_SAFE)}" if paths else ""
        )
        return self.request(f"/instances/{instance}/files{query}", "GET", "GetFilesResponse")

    def execute_commands(self, instance: str, commands: list[str], timeout: int | None = None) -> Any:
        body = {"commands": commands} | ({"timeout": timeout} if timeout is not None else {})
        return self.request(f"/instances/{instance}/commands", "POST", "ExecuteCommandsResponse", body)

    def get_instance_errors(self, instance: str) -> Any:
        return self.request(f"/instances/{instance}/errors", "GET", "RuntimeErrorResponse")

    def clear_instance_errors(self, instance: str) -> Any:
        return self.request(f"/instances/{instance}/errors", "DELETE", "ClearErrorsResponse")

    def run_static_analysis_code(self, instance: str, lint_files: list[str] | None = None) -> Any:
        query = f"?files={','.join(lint_files)}" if lint_files else ""
        return self.request(f"/instances/{instance}/analysis{query}", "GET", "StaticAnalysisResponse")

    def deploy_to_cloudflare_workers(self, instance: str) -> Any:
        return self.request(f"/instances/{instance}/deploy", "POST", "DeploymentResult")

    def shutdown_instance(self, instance: str) -> Any:
        return self.request(f"/instances/{instance}", "DELETE", "ShutdownResponse")

    def list_all_instances(self) -> Any:
        return self.request("/instances", "GET", "ListInstancesResponse")

    def update_project_name(self, instance: str, name: str) -> Any:
        response = self.http.post(
            f"/instances/{instance}/name",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            content=json.dumps({"projectName": name}),
        )
        return response.json() if response.is_success else {"success": False, "error": response.text}

    def get_logs(self, instance: str, only_recent: bool = False, duration: int | None = None) -> Any:
        # URLSearchParams: reset, then duration, each only when given.
        query = urlencode(({"reset": "true"} if only_recent else {}) | ({"duration": duration} if duration else {}))
        return self.request(f"/instances/{instance}/logs{'?' + query if query else ''}", "GET", "GetLogsResponse")

    def until_healthy(self, instance: str, timeout: float = 300) -> Any:
        """DeploymentManager's health check, polled every half second instead of every 30."""
        deadline = time.monotonic() + timeout
        while (status := self.get_instance_status(instance))["pending"]:
            assert time.monotonic() < deadline, f"{instance} still pending after {timeout} s"
            time.sleep(0.5)
        return status


@pytest.fixture
def upstream(stack: Stack) -> Iterator[Runner]:
    runner = Runner(stack, UPSTREAM)
    yield runner
    runner.http.close()


@pytest.fixture
def port(stack: Stack) -> Iterator[Runner]:
    runner = Runner(stack, PORT)
    yield runner
    runner.http.close()


def template_files(name: str) -> list[dict[str, str]]:
    """A template's files as VibSDK's agent holds them (fileManager.getAllFiles())."""
    root = TEMPLATES / name
    return [
        {"filePath": path.relative_to(root).as_posix(), "fileContents": path.read_text()}
        for path in sorted(root.rglob("*"))
        if path.is_file() and "node_modules" not in path.parts and path.name != ".gitignore"
    ]


def shut_down_and_gone(runner: Runner, instance: str) -> None:
    shutdown = runner.shutdown_instance(instance)
    assert shutdown["success"] is True, shutdown
    status = runner.get_instance_status(instance)
    assert (status["success"], status["isHealthy"]) == (False, False)
    assert status["error"] == f"instance {instance} was shut down"
    assert instance not in [item["runId"] for item in runner.list_all_instances()["instances"]]


def test_the_port_creates_from_a_template_name_and_drives_it_to_a_preview(port: Runner) -> None:
    details = port.get_template_details("react-vite")
    assert details["success"] is True and details["templateDetails"]["name"] == "react-vite"
    assert "src/App.tsx" in {item["filePath"] for item in details["templateDetails"]["files"]}
    assert problems(UPSTREAM, "TemplateDetailsResponse", details) == []  # upstream's fields are there too
    project = f"v1-react-{uuid.uuid4().hex[:6]}"
    created = port.create_instance(
        {
            "templateName": "react-vite",
            "projectName": project,
            "webhookUrl": "https://agent.example/webhook",
            "envVars": {},
        }
    )
    assert created["success"] is True and created["runId"] and created["previewURL"], created
    instance = created["runId"]
    status = port.until_healthy(instance)
    assert status["success"] is True and status["isHealthy"] is True, status
    instance_details = port.get_instance_details(instance)["instance"]
    assert instance_details["templateName"] == "react-vite" and instance_details["runId"] == instance

    written = port.write_files(instance, [{"filePath": "src/components/Counter.tsx", "fileContents": PLANTED}])
    assert written["success"] is True and written["results"] == [
        {"file": "src/components/Counter.tsx", "success": True}
    ]
    read = port.get_files(instance, ["src/components/Counter.tsx", "src/App.tsx"])
    assert {item["filePath"]: item["fileContents"] for item in read["files"]}["src/components/Counter.tsx"] == PLANTED

    ran = port.execute_commands(instance, ["test -f package.json && echo present", "cat no-such-file"])
    assert ran["success"] is True and "no-such-file" in ran["results"][1]["error"]
    assert [(item["command"], item["success"]) for item in ran["results"]] == [
        ("test -f package.json && echo present", True),
        ("cat no-such-file", False),
    ]
    assert ran["results"][0]["output"] == "present\n" and ran["results"][1]["exitCode"] == 1

    analysis = port.run_static_analysis_code(instance, ["src/components/Counter.tsx"])
    assert analysis["success"] is True and "error" not in analysis, analysis
    assert [(i["filePath"], i["line"], i["ruleId"]) for i in analysis["lint"]["issues"]] == [
        ("src/components/Counter.tsx", 7, "react-hooks/exhaustive-deps")
    ]
    assert [(i["filePath"], i["line"], i["ruleId"]) for i in analysis["typecheck"]["issues"]] == [
        ("src/components/Counter.tsx", 8, "TS2322")
    ]
    errors = port.get_instance_errors(instance)
    assert errors["hasErrors"] is True and any("TS2322" in error["message"] for error in errors["errors"]), errors
    assert port.clear_instance_errors(instance)["success"] is True
    assert port.get_instance_errors(instance)["errors"] == []
    logs = port.get_logs(instance)
    assert "present" in logs["logs"]["stdout"], logs

    fixed = PLANTED.replace("  const label: number = 'count'\n", "  const label = 'count'\n")
    assert port.write_files(instance, [{"filePath": "src/components/Counter.tsx", "fileContents": fixed}])["success"]
    deployed = port.deploy_to_cloudflare_workers(instance)
    assert deployed["success"] is True and deployed["deployedUrl"], deployed
    page = httpx.get(deployed["deployedUrl"], timeout=30)
    assert page.status_code == 200 and '<div id="root">' in page.text

    assert port.update_project_name(instance, "renamed-app") is True
    listed = port.list_all_instances()
    assert instance in [item["runId"] for item in listed["instances"]]
    assert port.get_instance_status(instance)["isHealthy"] is True  # the failed command left it healthy
    shut_down_and_gone(port, instance)


def test_upstream_creates_from_files_and_follows_deployment_manager(upstream: Runner) -> None:
    # The static site's pages: an instance made from files has no template's build, so its root is published.
    # VibSDK's own templates are Workers: their wrangler.jsonc names the script, which is not run here.
    files = [*template_files("static-site/src"), {"filePath": "wrangler.jsonc", "fileContents": WRANGLER}]
    created = upstream.create_instance(
        {"files": files, "projectName": f"static-{uuid.uuid4().hex[:6]}", "initCommand": "bun run dev", "envVars": {}}
    )
    assert created["success"] is True and created["runId"] and created["previewURL"], created
    instance = created["runId"]
    status = upstream.until_healthy(instance)
    assert status["success"] is True and status["isHealthy"] is True, status

    # deploy(): the generated files written, then (clearLogs) logs reset and errors cleared together.
    page = next(item for item in files if item["filePath"] == "index.html")
    marker = f"Runner {uuid.uuid4().hex[:8]}"
    edited = page["fileContents"].replace("Hello from VibSDK", marker)
    written = upstream.write_files(instance, [{"filePath": "index.html", "fileContents": edited}], "edit")
    assert written["success"] is True, written
    assert upstream.get_logs(instance, only_recent=True)["success"] is True
    assert upstream.clear_instance_errors(instance)["success"] is True
    # executeSetupCommands, then the agent's own commands (its timeouts are milliseconds).
    ran = upstream.execute_commands(instance, ["ls", "exit 3"], timeout=30000)
    assert ran["success"] is True and [item["success"] for item in ran["results"]] == [True, False], ran
    assert "index.html" in ran["results"][0]["output"]
    assert "index.html" in upstream.get_logs(instance, duration=300)["logs"]["stdout"]
    read = upstream.get_files(instance, ["index.html"])
    assert read["files"] == [{"filePath": "index.html", "fileContents": edited}]
    assert len(upstream.get_files(instance)["files"]) == len(files)

    analysis = upstream.run_static_analysis_code(instance, ["index.html"])
    assert analysis["success"] is True and "error" not in analysis, analysis
    deployed = upstream.deploy_to_cloudflare_workers(instance)
    assert deployed["success"] is True and deployed["deployedUrl"], deployed
    assert "wrangler.jsonc" in deployed["message"] and "does not run" in deployed["message"]
    served = httpx.get(deployed["deployedUrl"], timeout=30)
    assert served.status_code == 200 and marker in served.text

    assert upstream.update_project_name(instance, "static-renamed") is True
    assert upstream.get_instance_details(instance)["instance"]["runId"] == instance
    shut_down_and_gone(upstream, instance)


def test_upstream_from_a_vite_apps_files_finds_planted_lint_and_type_errors(upstream: Runner) -> None:
    """VibSDK's agent sends a Vite app's files: its lockfile's install, its own lint, type-check and build."""
    created = upstream.create_instance({"files": template_files("react-vite"), "projectName": "vite-files"})
    instance = created["runId"]
    assert upstream.until_healthy(instance)["isHealthy"] is True
    planted = [{"filePath": "src/components/Counter.tsx", "fileContents": PLANTED}]
    assert upstream.write_files(instance, planted)["success"] is True
    analysis = upstream.run_static_analysis_code(instance, ["src/components/Counter.tsx"])
    assert analysis["success"] is True and "error" not in analysis, analysis
    assert [(i["filePath"], i["line"], i["ruleId"]) for i in analysis["lint"]["issues"]] == [
        ("src/components/Counter.tsx", 7, "react-hooks/exhaustive-deps")
    ]
    assert [(i["filePath"], i["line"], i["ruleId"]) for i in analysis["typecheck"]["issues"]] == [
        ("src/components/Counter.tsx", 8, "TS2322")
    ]
    fixed = PLANTED.replace("  const label: number = 'count'\n", "  const label = 'count'\n")
    assert upstream.write_files(instance, [{"filePath": "src/components/Counter.tsx", "fileContents": fixed}])[
        "success"
    ]
    deployed = upstream.deploy_to_cloudflare_workers(instance)
    assert deployed["success"] is True, deployed
    page = httpx.get(deployed["deployedUrl"], timeout=30)
    assert page.status_code == 200 and '<div id="root">' in page.text  # dist/, the build's output
    shut_down_and_gone(upstream, instance)


def test_another_owner_sees_a_404_and_a_bad_body_names_its_field(stack: Stack, port: Runner) -> None:
    created = port.create_instance({"templateName": "static-site", "projectName": "mine"})
    instance = created["runId"]
    keys = KeyStore(clients.firestore_client(Settings.from_env(stack.env)))
    key_id, key = keys.issue(f"other-{uuid.uuid4().hex[:6]}@example.com")
    try:
        other = Runner(stack, PORT, token=key)
        for answer in (other.get_instance_status(instance), other.deploy_to_cloudflare_workers(instance)):
            assert (answer["status"], answer["error"]) == (404, f"session {instance!r} does not exist.")
        missing = other.get_instance_status(str(uuid.uuid4()))
        assert missing["status"] == 404 and missing["error"].startswith("session ")
    finally:
        keys.revoke(key_id)
    bad = port.write_files(instance, [{"filePath": "", "fileContents": "x"}])
    assert bad["status"] == 422 and bad["error"].startswith("files.0.filePath: "), bad
    assert port.until_healthy(instance)["isHealthy"] is True
    shut_down_and_gone(port, instance)
