"""Every shipped template through the HTTP API: create, edit, analyse, build and deploy, preview, shut down."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import wait_for_run

pytestmark = pytest.mark.e2e
TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

# The file each template renders its page from, and how to put a marker in it.
EDITS = {
    "static-site": ("src/index.html", lambda text, marker: text.replace("Hello from VibSDK", marker)),
    "node-app": ("src/render.js", lambda text, marker: text.replace('"Node app"', f'"{marker}"')),
    "python-app": ("app/__init__.py", lambda text, marker: text.replace('"Python app"', f'"{marker}"')),
}


def act(api: httpx.Client, session_id: str, action: str, params: dict[str, object] | None = None) -> dict[str, object]:
    queued = api.post(f"/api/agent/{session_id}/actions", json={"action": action, "params": params or {}})
    assert queued.status_code == 202, queued.text
    return wait_for_run(api, queued.json()["runUrl"], timeout=120)


@pytest.mark.parametrize("template", sorted(EDITS))
def test_template_from_create_to_shutdown(api: httpx.Client, stack: Stack, template: str) -> None:
    timings = {}
    started = time.monotonic()
    created = api.post("/api/agent", json={"templateName": template}).json()
    session_id = created["sessionId"]
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    timings["createInstance"] = time.monotonic() - started

    path, edit = EDITS[template]
    marker = f"Edited {uuid.uuid4().hex[:8]}"
    original = (TEMPLATES / template / path).read_text()
    assert edit(original, marker) != original
    written = act(
        api, session_id, "writeFiles", {"files": [{"filePath": path, "fileContents": edit(original, marker)}]}
    )
    assert written["status"] == "succeeded", written

    analysis = act(api, session_id, "runStaticAnalysisCode")
    assert analysis["status"] == "succeeded", analysis
    assert analysis["result"]["lint"]["summary"]["errorCount"] == 0

    started = time.monotonic()
    deployed = act(api, session_id, "deployInstance")
    timings["deployInstance"] = time.monotonic() - started
    assert deployed["status"] == "succeeded", deployed
    preview_url = deployed["result"]["previewUrl"]
    assert api.get(f"/api/agent/{session_id}/preview").json()["previewUrl"] == preview_url

    page = httpx.get(preview_url)  # no bearer token: the URL's own token opens it
    assert page.status_code == 200
    assert marker in page.text
    assert page.headers["content-type"].startswith("text/html")

    assert act(api, session_id, "shutdownInstance")["status"] == "succeeded"
    assert httpx.get(preview_url).status_code == 404
    assert api.get(f"/api/agent/{session_id}/preview").json()["previewUrl"] is None
    print(f"{template}: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in timings.items()))


def test_lint_issues_are_structured(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "static-site"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    page = '<!doctype html><html lang="en"><head><title>t</title></head><body>\n<img src="a.png">\n</body></html>\n'
    act(api, created["sessionId"], "writeFiles", {"files": [{"filePath": "src/index.html", "fileContents": page}]})
    analysis = act(api, created["sessionId"], "runStaticAnalysisCode")
    assert analysis["status"] == "succeeded", analysis
    [issue] = analysis["result"]["lint"]["issues"]
    assert issue == {
        "filePath": "src/index.html",
        "line": 2,
        "column": 2,
        "message": '<img> is missing required "alt" attribute',
        "severity": "warning",
        "ruleId": "wcag/h37",
        "source": "html-validate",
    }


def test_failing_build_fails_the_deploy(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "node-app"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    broken = "export const site = ;\n"
    act(api, created["sessionId"], "writeFiles", {"files": [{"filePath": "src/render.js", "fileContents": broken}]})
    deployed = act(api, created["sessionId"], "deployInstance")
    assert deployed["status"] == "failed"
    assert "build" in deployed["error"] and "SyntaxError" in deployed["error"]
    # The live preview published after createInstance stays served: a failed build replaces nothing.
    preview = api.get(f"/api/agent/{created['sessionId']}/preview").json()["previewUrl"]
    assert preview and httpx.get(preview).status_code == 200


def test_one_sessions_actions_run_in_publish_order(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "python-app"}).json()
    runs = [created["runUrl"]]
    for index in range(6):
        queued = api.post(
            f"/api/agent/{created['sessionId']}/actions",
            json={
                "action": "executeCommands",
                "params": {"commands": [f"sleep 0.{6 - index}; echo {index} >> order.txt"]},
            },
        )
        runs.append(queued.json()["runUrl"])
    assert all(wait_for_run(api, url)["status"] == "succeeded" for url in runs)
    files = act(api, created["sessionId"], "getFiles", {"filePaths": ["order.txt"]})
    assert files["result"]["files"][0]["fileContents"].split() == [str(i) for i in range(6)]


def test_logs_and_errors_follow_commands(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "python-app"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    session = created["sessionId"]
    big = act(
        api, session, "executeCommands", {"commands": ["head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail-marker"]}
    )
    entry = big["result"]["results"][0]
    assert entry["truncated"] and len(entry["output"]) < 20000 and "tail-marker" in entry["output"]
    assert entry["log"].startswith("gs://vibesdk-logs/")
    act(api, session, "executeCommands", {"commands": ["python3 -c 'import nope'"]})
    logs = act(api, session, "getLogs")["result"]["logs"]
    assert "ModuleNotFoundError" in logs["stderr"]
    errors = act(api, session, "getInstanceErrors")["result"]
    assert errors["hasErrors"] and any("ModuleNotFoundError" in e["message"] for e in errors["errors"])
    assert act(api, session, "clearInstanceErrors")["result"]["cleared"] >= 1
    assert act(api, session, "getInstanceErrors")["result"]["errors"] == []
    assert act(api, session, "clearLogs")["status"] == "succeeded"
    assert act(api, session, "getLogs")["result"]["logs"] == {"stdout": "", "stderr": ""}


def test_instance_details_status_and_list(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "node-app"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    session = created["sessionId"]
    status = act(api, session, "getInstanceStatus")["result"]
    # A live instance: its first version was published right after createInstance, before this run.
    assert status["isHealthy"] and status["status"] == "deployed"
    details = act(api, session, "getInstanceDetails")["result"]
    assert details["instance"]["templateName"] == "node-app" and details["fileCount"] >= 5
    listed = act(api, session, "listAllInstances")["result"]
    assert session in [i["instanceId"] for i in listed["instances"]]
    act(api, session, "shutdownInstance")
    assert act(api, session, "getInstanceStatus")["result"]["status"] == "absent"
    again = act(api, session, "executeCommands", {"commands": ["true"]})
    assert again["status"] == "failed" and "run createInstance first" in again["error"]


def test_cloudflare_only_actions_are_refused(api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "node-app"}).json()
    run = act(api, created["sessionId"], "deployToCloudflareWorkers")
    assert run["status"] == "failed" and run["error"] == "deployToCloudflareWorkers is unsupported on this runtime"
