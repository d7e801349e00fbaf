"""`python -m devstack`, the program behind `make dev`: starts, prints, stops everything on a signal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.config import PORTS, Ports, job_instances
from tests import PORT_SHIFT

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
OWN_PORTS = {key: str(26000 + PORT_SHIFT + index) for index, (_, key, _) in enumerate(PORTS)}
# Every port the stack listens on: those above, and each further job instance's, ten apart (Ports.job_port).
LISTENING = [*OWN_PORTS.values()] + [
    str(Ports.from_env(OWN_PORTS).job_port(index)) for index in range(1, job_instances(os.environ))
]
# In the environment of every process a `make dev` of this test starts, whatever its parent.
RUN_MARKER = "VIBESDK_TEST_DEV_RUN"


def listening(port: str) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", int(port))) == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_dev_stops_every_process_it_started(stop_signal: int, tmp_path: Path) -> None:
    process, text, marker = start_dev()
    try:
        assert "export VIBESDK_API_TOKEN=" in text, text
        assert f"http://127.0.0.1:{OWN_PORTS['VIBESDK_CONTROL_PLANE_PORT']}" in text
        assert all(listening(port) for port in LISTENING), text
        started = started_processes(process.pid, marker)
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert survivors_within(60, started, marker) == {}
    assert ports_free_within(60) == []


def test_dev_names_a_missing_emulator(tmp_path: Path) -> None:
    env = (
        dict(os.environ)
        | OWN_PORTS
        | {
            "PATH": "/usr/bin/nothing-here:" + str(Path(sys.executable).parent),
            "VIBESDK_SHARED_EMULATORS": str(tmp_path),
        }
    )
    env.pop("VIBESDK_PUBSUB_EMULATOR_JAR", None)
    result = subprocess.run(
        [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Pub/Sub emulator is missing" in result.stderr
    assert "google-cloud-cli-pubsub-emulator" in result.stderr
    assert not any(listening(port) for port in LISTENING)


def test_dev_refuses_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(OWN_PORTS["VIBESDK_CONTROL_PLANE_PORT"])))
        taken.listen()
        env = dict(os.environ) | OWN_PORTS
        result = subprocess.run(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode != 0
    assert f"port {OWN_PORTS['VIBESDK_CONTROL_PLANE_PORT']} (control plane) is in use" in result.stderr
    assert "VIBESDK_CONTROL_PLANE_PORT" in result.stderr


def start_dev() -> tuple[subprocess.Popen[str], str, str]:
    """`python -m devstack` started, its output up to its ready line, and the marker in its processes' environment."""
    marker = uuid.uuid4().hex
    env = dict(os.environ) | OWN_PORTS | {"VIBESDK_API_TOKEN": "", "VIBESDK_WORKSPACE_ROOT": "", RUN_MARKER: marker}
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a group of its own, as `make dev` in a terminal
    )
    output = []
    assert process.stdout is not None
    for line in process.stdout:
        output.append(line)
        if "Ctrl-C stops everything" in line:
            break
    return process, "".join(output), marker


def ports_free_within(seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while any(listening(port) for port in LISTENING) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [port for port in LISTENING if listening(port)]


# A process: its pid and its start time (a pid alone may be reused).
Process = tuple[int, int]


def _processes() -> dict[Process, tuple[int, str]]:
    """Every live process: its parent and its command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] not in ("Z", "X"):  # a zombie has ended: only its exit status is left
            found[(int(entry.name), int(fields[19]))] = (int(fields[1]), cmdline[:120])
    return found


def _marked(pid: int, marker: str) -> bool:
    try:
        return f"{RUN_MARKER}={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def started_processes(root: int, marker: str) -> dict[Process, str]:
    """The processes under `root` (children of children too) and those that carry the run's marker."""
    processes = _processes()
    below: dict[int, list[Process]] = {}
    for process, (parent, _) in processes.items():
        below.setdefault(parent, []).append(process)
    found, todo = {}, [root]
    while todo:
        for child in below.get(todo.pop(), []):
            found[child] = processes[child][1]
            todo.append(child[0])
    found |= {
        process: info[1] for process, info in processes.items() if process[0] != root and _marked(process[0], marker)
    }
    # At least a process a port: three emulators, each job instance, the recorder, the router, the control plane.
    assert len(found) >= len(LISTENING), found
    return found


def survivors_within(seconds: float, started: dict[Process, str], marker: str) -> dict[Process, str]:
    """What is still running after `seconds` of those started, or of any process with the run's marker."""
    deadline = time.monotonic() + seconds
    while True:
        alive = _processes()
        left = {process: started[process] for process in started if process in alive}
        left |= {process: info[1] for process, info in alive.items() if _marked(process[0], marker)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_no_child_outlives_a_killed_supervisor() -> None:
    """SIGKILL leaves the supervisor no chance to stop anything: its children die with it all the same."""
    process, text, marker = start_dev()
    try:
        assert all(listening(port) for port in LISTENING), text
        started = started_processes(process.pid, marker)
        process.kill()
        process.wait()
        assert survivors_within(60, started, marker) == {}
        assert ports_free_within(60) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize("attempt", range(3))
def test_a_signal_to_the_group_stops_everything_every_time(attempt: int) -> None:
    """SIGTERM to the whole process group, as a terminal or a caller sends it, after some load."""
    process, text, marker = start_dev()
    try:
        api = f"http://127.0.0.1:{OWN_PORTS['VIBESDK_CONTROL_PLANE_PORT']}"
        token = text.split("export VIBESDK_API_TOKEN=", 1)[1].split()[0]
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for _ in range(20):
                client.post("/api/agent", json={"templateName": "static-site"})
        started = started_processes(process.pid, marker)  # sandboxed commands of the load among them
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        assert survivors_within(60, started, marker) == {}
        assert ports_free_within(60) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
