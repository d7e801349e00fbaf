"""`python -m devstack`, the program behind `make dev`: starts, prints, stops everything on a signal."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack.config import PORTS

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
OWN_PORTS = {key: str(26000 + index) for index, (_, key, _) in enumerate(PORTS)}


def listening(port: str) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", int(port))) == 0


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_dev_stops_every_process_it_started(stop_signal: int, tmp_path: Path) -> None:
    process, text = start_dev()
    try:
        assert "export VIBESDK_API_TOKEN=" in text, text
        assert f"http://127.0.0.1:{OWN_PORTS['VIBESDK_CONTROL_PLANE_PORT']}" in text
        assert all(listening(port) for port in OWN_PORTS.values()), text
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert ports_free_within(10) == []


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
    assert not any(listening(port) for port in OWN_PORTS.values())


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


def start_dev() -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ) | OWN_PORTS | {"VIBESDK_API_TOKEN": "", "VIBESDK_WORKSPACE_ROOT": ""}
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
    return process, "".join(output)


def ports_free_within(seconds: float) -> list[str]:
    deadline = time.monotonic() + seconds
    while any(listening(port) for port in OWN_PORTS.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [port for port in OWN_PORTS.values() if listening(port)]


def test_no_child_outlives_a_killed_supervisor() -> None:
    """SIGKILL leaves the supervisor no chance to stop anything: its children die with it all the same."""
    process, text = start_dev()
    try:
        assert all(listening(port) for port in OWN_PORTS.values()), text
        process.kill()
        process.wait()
        assert ports_free_within(15) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize("attempt", range(3))
def test_a_signal_to_the_group_stops_everything_every_time(attempt: int) -> None:
    """SIGTERM to the whole process group, as a terminal or a caller sends it, after some load."""
    process, text = start_dev()
    try:
        api = f"http://127.0.0.1:{OWN_PORTS['VIBESDK_CONTROL_PLANE_PORT']}"
        token = text.split("export VIBESDK_API_TOKEN=", 1)[1].split()[0]
        with httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for _ in range(20):
                client.post("/api/agent", json={"templateName": "static-site"})
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        assert ports_free_within(15) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
