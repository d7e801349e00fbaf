"""`python -m devstack`, the program behind `make dev`: starts, prints, stops everything on a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
    env = dict(os.environ) | OWN_PORTS | {"VIBESDK_API_TOKEN": "", "VIBESDK_WORKSPACE_ROOT": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(output)
        assert "export VIBESDK_API_TOKEN=" in text, text
        assert f"http://127.0.0.1:{OWN_PORTS['VIBESDK_CONTROL_PLANE_PORT']}" in text
        assert all(listening(port) for port in OWN_PORTS.values()), text
        process.send_signal(stop_signal)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    deadline = time.monotonic() + 10
    while any(listening(port) for port in OWN_PORTS.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [port for port in OWN_PORTS.values() if listening(port)] == []


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
