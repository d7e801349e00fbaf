"""VibSDK's DeploymentManager sequence on the react-vite template, through /runner, with a warm cache.

The calls the agent makes of RemoteSandboxServiceClient (cloudflare/vibesdk
worker/agents/services/implementations/DeploymentManager.ts), each timed from its request to its
answer: createInstance, its status until healthy (polled), writeFiles of the root component,
getFiles of it back, executeCommands, runStaticAnalysisCode, getInstanceErrors,
clearInstanceErrors, getLogs, deployToCloudflareWorkers, the deployed preview fetched,
updateProjectName, listAllInstances, shutdownInstance. Twice over: created from the template's files
(upstream's body) and from its name (the Google Cloud port's body). The dependencies' tree is in
Cloud Storage beforehand (one unmeasured createInstance), as a warm cache has it. The stack's job
instances (two by default) share the sequence's runs as the router spreads them; the job's logs say
which instance started each.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import httpx

from bench.job_logs import JobLogs
from bench.runner import RunnerClient
from devstack.config import HOST
from devstack.stack import PROJECT_ROOT, Stack

TEMPLATE = "react-vite"
TEMPLATE_DIR = PROJECT_ROOT / "templates" / TEMPLATE
STATUS_POLL_SECONDS = 0.1
EDITED = "src/App.tsx"


def template_files() -> list[dict[str, str]]:
    """The template's files as the agent's file manager hands them over, its own metadata left out."""
    redacted = set(json.loads((TEMPLATE_DIR / ".redacted_files.json").read_text()))
    return [
        {"filePath": str(path.relative_to(TEMPLATE_DIR)), "fileContents": path.read_text()}
        for path in sorted(TEMPLATE_DIR.rglob("*"))
        if path.is_file() and str(path.relative_to(TEMPLATE_DIR)) not in redacted
    ]


def create_bodies(project: str) -> dict[str, dict[str, Any]]:
    """createInstance's body in each version: upstream sends the files, the port the template's name."""
    return {
        "from files (upstream)": {"files": template_files(), "projectName": project, "envVars": {}},
        "from name (port)": {"templateName": TEMPLATE, "projectName": project},
    }


def _fetch(url: str) -> httpx.Response:
    """GET a preview; a `*.localhost` host (previews served by host, locally) is reached on loopback."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if host.endswith(".localhost"):
        loopback = parts._replace(netloc=f"{HOST}:{parts.port or 80}")
        return httpx.get(urllib.parse.urlunsplit(loopback), headers={"Host": parts.netloc}, timeout=60)
    return httpx.get(url, timeout=60)


def _succeeded(answer: Any) -> Any:
    if isinstance(answer, dict) and answer.get("success") is False:
        raise RuntimeError(f"answered a failure: {answer.get('error') or answer.get('message')}")
    return answer


def _page(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200 or "<html" not in response.text.lower():
        raise RuntimeError(f"the preview answered {response.status_code}")
    return response


def sequence(runner: RunnerClient, body: dict[str, Any]) -> dict[str, Any]:
    """One DeploymentManager sequence: milliseconds per call, in the agent's order, and the calls that
    failed (each timed all the same, its error kept: the agent would go on, or redeploy)."""
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}

    def timed(name: str, call: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        try:
            return call()
        except RuntimeError as error:
            failures[name] = str(error)[:300]
            return None
        finally:
            timings[name] = round((time.perf_counter() - began) * 1000, 1)

    began = time.perf_counter()
    created = _succeeded(runner.call("POST", "/instances", body))
    timings["createInstance"] = round((time.perf_counter() - began) * 1000, 1)
    instance = created["runId"]
    at = f"/instances/{instance}"
    polls = 0

    def until_healthy() -> None:
        nonlocal polls
        while True:
            status = runner.call("GET", f"{at}/status")
            polls += 1
            if status.get("isHealthy"):
                return
            if not status.get("pending", True):
                raise RuntimeError(f"instance {instance} failed: {status}")
            time.sleep(STATUS_POLL_SECONDS)

    began = time.perf_counter()
    until_healthy()
    timings["status until healthy"] = round((time.perf_counter() - began) * 1000, 1)
    app = (TEMPLATE_DIR / EDITED).read_text().replace("clicked", "pressed")
    files = [{"filePath": EDITED, "fileContents": app}]
    edit = {"files": files, "commitMessage": "edit"}
    timed("writeFiles", lambda: _succeeded(runner.call("POST", f"{at}/files", edit)))
    paths = urllib.parse.quote(json.dumps([EDITED], separators=(",", ":")), safe="!'()*-._~")

    def read_back() -> None:
        read = _succeeded(runner.call("GET", f"{at}/files?filePaths={paths}"))
        if [f["fileContents"] for f in read["files"] if f["filePath"] == EDITED] != [app]:
            raise RuntimeError("getFiles read back other text")

    timed("getFiles", read_back)
    timed("executeCommands", lambda: _succeeded(runner.call("POST", f"{at}/commands", {"commands": ["ls src"]})))
    timed("runStaticAnalysisCode", lambda: _succeeded(runner.call("GET", f"{at}/analysis?files={EDITED}")))
    timed("getInstanceErrors", lambda: _succeeded(runner.call("GET", f"{at}/errors")))
    timed("clearInstanceErrors", lambda: _succeeded(runner.call("DELETE", f"{at}/errors")))
    timed("getLogs", lambda: _succeeded(runner.call("GET", f"{at}/logs?reset=true")))
    deployed = timed("deployToCloudflareWorkers", lambda: _succeeded(runner.call("POST", f"{at}/deploy")))
    if deployed:
        timed("fetch the preview", lambda: _page(_fetch(deployed["deployedUrl"])))
    else:
        timings["fetch the preview"] = 0.0
        failures["fetch the preview"] = "not fetched: the deploy failed"
    timed("updateProjectName", lambda: runner.call("POST", f"{at}/name", {"projectName": "bench-renamed"}))
    timed("listAllInstances", lambda: _succeeded(runner.call("GET", "/instances")))
    timed("shutdownInstance", lambda: _succeeded(runner.call("DELETE", at)))
    return {
        "instance": instance,
        "calls": timings,
        "failures": failures,
        "total_ms": round(sum(timings.values()), 1),
        "status_polls": polls,
    }


def manager_sequence(stack: Stack, token: str, repeats: int) -> dict[str, Any]:
    """Both versions' sequence `repeats` times, alternated; medians per call and of the totals."""
    runner = RunnerClient(stack, token)
    logs = JobLogs(stack)
    warm, _ = runner.create(create_bodies("bench-warm-up")["from name (port)"], STATUS_POLL_SECONDS)
    runner.call("DELETE", f"/instances/{warm}")
    bodies = create_bodies("bench-deployment-manager")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in bodies}
    for index in range(repeats):
        for name in list(bodies) if index % 2 == 0 else list(bodies)[::-1]:
            made = sequence(runner, bodies[name])
            # The runs of the sequence each instance started (its session is the runner's instance).
            runs[name].append(made | {"ran_on": logs.session_spread(made["instance"])})
    versions = {}
    for name, done in runs.items():
        calls = list(done[0]["calls"])
        versions[name] = {
            "calls_ms": {call: round(statistics.median(run["calls"][call] for run in done), 1) for call in calls},
            "total_ms": round(statistics.median(run["total_ms"] for run in done), 1),
            "totals_ms": [run["total_ms"] for run in done],
            "status_polls": [run["status_polls"] for run in done],
            "ran_on": [run["ran_on"] for run in done],
            # Each failed call, with its error as the last sequence that failed it had it.
            "failures": {call: error for run in done for call, error in run["failures"].items()},
            "failed_sequences": {
                call: sum(call in run["failures"] for run in done) for run in done for call in run["failures"]
            },
        }
    return {
        "repeats": repeats,
        "instances": stack.job_count,
        "template": TEMPLATE,
        "status_poll_ms": STATUS_POLL_SECONDS * 1000,
        "files_sent": len(bodies["from files (upstream)"]["files"]),
        "versions": versions,
    }
