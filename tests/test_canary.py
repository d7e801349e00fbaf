"""The isolation canary names each probe that does not behave, against a fake control plane on
loopback (real HTTP) whose sandbox answers each probe's commands as the test says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devstack.canary_probes import PROCESSES_TRIED, Probe, probes

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "canary-test"
# What a sandbox answers one run's commands: (exit code of each command, the last one's output).
Answer = tuple[int, str]
Sandbox = Callable[[Probe, bool], Answer]  # the probe, and whether the run is its setup


def well_behaved(probe: Probe, setup: bool) -> Answer:
    """The answers of a sandbox that isolates as documented: a refused probe says what stopped it."""
    if setup or not probe.refused:
        return 0, "done"
    return 1, "\n".join(f"{proof}: as the sandbox should" for proof in probe.proof)


def escaping(name: str) -> Sandbox:
    """As well_behaved, except that the probe `name` got through."""

    def answer(probe: Probe, setup: bool) -> Answer:
        if probe.name == name and not setup:
            return 0, f"ESCAPED: python tunnel metadata.google.internal answered 200 ({PROCESSES_TRIED} bytes)"
        return well_behaved(probe, setup)

    return answer


def run_of(
    action: str,
    params: dict[str, Any],
    by_commands: dict[tuple[tuple[str, ...], bool], tuple[Probe, bool]],
    sandbox: Sandbox,
) -> dict[str, Any]:
    if action != "executeCommands":
        return {"action": action, "status": "succeeded", "result": {}}
    commands = tuple(params["commands"])
    probe, setup = by_commands[commands, bool(params.get("allowNetwork"))]
    code, output = sandbox(probe, setup)
    results = [{"command": c, "exitCode": 0, "output": "", "error": ""} for c in commands[:-1]]
    results.append({"command": commands[-1], "exitCode": code, "output": output + "\n", "error": ""})
    status = "succeeded" if code == 0 else "failed"
    return {"action": action, "status": status, "result": {"results": results}, "error": None if code == 0 else "exit"}


@pytest.fixture
def control_plane() -> Iterator[Callable[[Sandbox | None], str]]:
    """A control plane on loopback: sessions, actions and runs as docs/API.md has them, every run
    ended at once; its sandbox answers as the test says (None: every command refused to run)."""
    servers: list[ThreadingHTTPServer] = []

    def start(sandbox: Sandbox | None) -> str:
        runs: dict[str, dict[str, Any]] = {}
        by_commands: dict[tuple[tuple[str, ...], bool], tuple[Probe, bool]] = {}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                run_id = f"run-{len(runs)}"
                if self.path == "/api/agent":
                    runs[run_id] = {"action": "createInstance", "status": "succeeded", "result": {}}
                elif sandbox is None and body["action"] == "executeCommands":
                    refused = "sandboxed commands are refused: no isolation backend works here"
                    runs[run_id] = {"action": "executeCommands", "status": "failed", "error": refused}
                else:
                    runs[run_id] = run_of(
                        body["action"], body.get("params") or {}, by_commands, sandbox or well_behaved
                    )
                self.answer(202, {"sessionId": "session-1", "runId": run_id, "status": "queued"})

            def do_GET(self) -> None:
                run = runs.get(self.path.split("?")[0].rsplit("/", 1)[-1])
                self.answer(200, run) if run else self.answer(404, {"error": "not_found"})

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        for probe in probes(url, PROJECT):
            by_commands[probe.commands, probe.network] = (probe, False)
            if probe.setup:
                by_commands[probe.setup, probe.network] = (probe, True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def smoke(url: str) -> subprocess.CompletedProcess[str]:
    """`make smoke URL=url`, as Cloud Build's smoke step runs it."""
    command = [sys.executable, "-m", "devstack.smoke", "--url", url, "--project", PROJECT, "--timeout", "20"]
    env = dict(os.environ) | {"VIBESDK_API_TOKEN": "canary-test-token"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def lines_by_probe(output: str, url: str) -> dict[str, str]:
    lines = output.splitlines()
    return {p.name: next(line for line in lines if line.startswith(f"{p.name} ")) for p in probes(url, PROJECT)}


def test_a_sandbox_that_isolates_passes(control_plane: Callable[[Sandbox | None], str]) -> None:
    url = control_plane(well_behaved)
    result = smoke(url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(line.endswith("  ok") for line in lines_by_probe(result.stdout, url).values()), result.stdout


def test_a_probe_that_got_through_fails_the_deploy_and_is_named(control_plane: Callable[[Sandbox | None], str]) -> None:
    url = control_plane(escaping("metadata-with-network"))
    result = smoke(url)
    assert result.returncode == 1, result.stdout
    lines = lines_by_probe(result.stdout, url)
    assert lines.pop("metadata-with-network").endswith(
        "ESCAPED: python tunnel metadata.google.internal answered 200 (512 bytes)  FAILED"
    )
    assert all(line.endswith("  ok") for line in lines.values()), result.stdout
    assert result.stdout.splitlines()[-1] == "canary FAILED: metadata-with-network (1 of 9 did not behave)"


def test_an_install_that_fails_is_named(control_plane: Callable[[Sandbox | None], str]) -> None:
    def no_registry(probe: Probe, setup: bool) -> Answer:
        if probe.name == "install-through-allow-list":
            return 1, "npm error 403 egress refused: registry.npmjs.org is not on the egress allow-list"
        return well_behaved(probe, setup)

    result = smoke(control_plane(no_registry))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "canary FAILED: install-through-allow-list (1 of 9 did not behave)"


def test_a_refusal_that_never_tried_is_no_pass(control_plane: Callable[[Sandbox | None], str]) -> None:
    """A probe that exits 1 without saying what stopped it (python3 missing, say) proves nothing."""

    def no_python(probe: Probe, setup: bool) -> Answer:
        if probe.name == "raise-own-limits":
            return 127, "sh: 1: python3: not found"
        return well_behaved(probe, setup)

    url = control_plane(no_python)
    result = smoke(url)
    assert result.returncode == 1
    line = lines_by_probe(result.stdout, url)["raise-own-limits"]
    assert line.endswith("exit 127: sh: 1: python3: not found (never said 'held at': it did not try)  FAILED"), line


def test_a_heartbeat_that_never_started_fails_the_probe(control_plane: Callable[[Sandbox | None], str]) -> None:
    def no_setsid(probe: Probe, setup: bool) -> Answer:
        return (127, "sh: 1: setsid: not found") if setup else well_behaved(probe, setup)

    url = control_plane(no_setsid)
    result = smoke(url)
    line = lines_by_probe(result.stdout, url)["outlive-its-action"]
    assert line.endswith("observed: setup failed: sh: 1: setsid: not found  FAILED"), line
    assert result.stdout.splitlines()[-1] == "canary FAILED: outlive-its-action (1 of 9 did not behave)"


def test_commands_that_never_ran_fail_every_probe(control_plane: Callable[[Sandbox | None], str]) -> None:
    """Fail closed: a backend that runs nothing refuses every escape, and passes no probe."""
    url = control_plane(None)
    result = smoke(url)
    assert result.returncode == 1
    lines = lines_by_probe(result.stdout, url)
    refused = "not run: sandboxed commands are refused: no isolation backend works here  FAILED"
    assert all(line.endswith(refused) for line in lines.values()), result.stdout
    assert result.stdout.splitlines()[-1] == f"canary FAILED: {', '.join(lines)} (9 of 9 did not behave)"
