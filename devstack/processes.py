"""Child processes of the local stack: started in their own process groups, all stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vibesdk_gcp.errors import ConfigurationError

STOP_GRACE_SECONDS = 10.0
# Each child dies when the supervisor does, however that happens (SIGKILL included): setpriv
# (util-linux) sets the parent-death signal and execs the unit. Not a preexec_fn: forking a process
# that runs gRPC's threads and running Python code in the child before exec can abort the child.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    argv: list[str]
    env: dict[str, str]
    cwd: Path


class Supervisor:
    """Starts children and guarantees each one, and its whole group, is gone at stop()."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._logs: list[IO[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        self._logs.append(log)
        process = subprocess.Popen(
            DIE_WITH_PARENT + argv,
            env=env,
            cwd=str(cwd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child = Child(name, process, log_path, argv, env, cwd)
        self.children.append(child)
        return child

    def wait_for_port(self, child: Child, host: str, port: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                tail = child.log.read_text(errors="replace")[-2000:]
                raise ConfigurationError(f"{child.name} exited with code {child.process.returncode}:\n{tail}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise ConfigurationError(
            f"{child.name} did not listen on {host}:{port} within {timeout:.0f} s (log: {child.log})"
        )

    def child(self, name: str) -> Child:
        return next(child for child in self.children if child.name == name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> Child:
        """Signal a child's whole group (SIGKILL: a crash) and wait for its leader."""
        child = self.child(name)
        _signal_group(child.process, sig)
        child.process.wait()
        if sig != signal.SIGKILL:
            _signal_group(child.process, signal.SIGKILL)  # what a graceful stop left behind
        return child

    def restart(self, name: str) -> Child:
        """Start a stopped child again, as it was started, in its place."""
        old = self.child(name)
        assert old.process.poll() is not None, f"{name} is still running"
        self.children.remove(old)
        return self.start(name, old.argv, old.env, old.cwd)

    def exited(self) -> Child | None:
        return next((child for child in self.children if child.process.poll() is not None), None)

    def stop(self) -> None:
        """SIGTERM every group, then SIGKILL what is left after the grace period."""
        for child in reversed(self.children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Java emulators and gunicorn leave workers: the group goes, whatever the leader did.
            _signal_group(child.process, signal.SIGKILL)
            child.process.wait()
        self.children.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
