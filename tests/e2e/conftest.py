"""The whole stack, started as `make dev` starts it, on ports of its own."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devstack.config import Ports, job_instances
from devstack.stack import Stack, job_workspace_root, start_stack
from tests import PORT_SHIFT
from vibesdk_cli import progress

E2E_PORTS = Ports.shifted(20000 + PORT_SHIFT)
TOKEN = "e2e-token"
# functions/job.py's line as a run starts: it carries the runId, and its log file names the instance.
STARTED = re.compile(r"\w+ started \(delivery attempt ")
T = TypeVar("T")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Each unit notes the Google permissions it uses (vibesdk_gcp/access.py): test_iam.py reads them.
    access = tmp_path_factory.mktemp("access")
    # The run's own workspaces, removed after it; where the sandbox's uid reaches them (pytest's tmp is 0700).
    workspaces = Path(tempfile.mkdtemp(prefix="vibesdk-e2e-workspaces-"))
    workspaces.chmod(0o711)
    env = dict(os.environ) | {
        "VIBESDK_API_TOKEN": TOKEN,
        "VIBESDK_ACCESS_DIR": str(access),
        "VIBESDK_HEADER_TIMEOUT_SECONDS": "2",  # test_pipeline's slow client need not wait 10 s
        "VIBESDK_WORKSPACE_ROOT": str(workspaces),
        # test_openapi_conformance's schemathesis sends thousands of requests a minute.
        "VIBESDK_REQUESTS_PER_MINUTE": "100000",
        # schemathesis's unauthenticated checks, beside every other e2e test from 127.0.0.1.
        "VIBESDK_UNAUTHENTICATED_PER_MINUTE": "100000",
    }
    try:
        stack = start_stack(E2E_PORTS, env, tmp_path_factory.mktemp("stack-logs"))
        yield stack
        stack.stop()
    finally:
        shutil.rmtree(workspaces)
        for index in range(1, job_instances(env)):  # each other instance's disk, beside the first's
            shutil.rmtree(job_workspace_root(str(workspaces), index), ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def localhost_subdomains() -> Iterator[None]:
    """*.localhost is loopback here too, as browsers resolve it (RFC 6761, 6.3): the stack's previews
    are http://{label}.localhost:PORT/, which this machine's resolver may not know."""
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost"):
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        yield client


def wait_for_run(api: httpx.Client, run_url: str, timeout: float = 60) -> dict[str, Any]:
    run = progress.wait_for_run(lambda: api.get(run_url).json(), timeout, every=0.1)
    if run["status"] not in progress.TERMINAL:
        raise AssertionError(f"{run_url} still {run['status']} after {timeout} s: {run}")
    return run


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = 60, every: float = 0.1) -> T:
    """What `condition` returns once it is truthy, polled every `every` s: the condition itself is
    waited for, not a guess at how long it takes; past a generous bound, a failure saying what."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(every)
    return value


def logs_of(stack: Stack) -> str:
    return "\n".join(f"== {p.name}\n{p.read_text()[-3000:]}" for p in Path(stack.supervisor.log_dir).glob("*.log"))


def job_log_entries(stack: Stack) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON line of every sandbox job instance's log, with the instance (unit) that wrote it."""
    for unit in stack.job_units:
        for line in (Path(stack.supervisor.log_dir) / f"{unit}.log").read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            yield unit, entry


def started_on(stack: Stack) -> dict[str, str]:
    """runId -> the job instance that last started it (a run given back for a retry starts again)."""
    latest: dict[str, tuple[str, str]] = {}
    for unit, entry in job_log_entries(stack):
        run_id = entry.get("runId")
        if run_id and STARTED.match(str(entry.get("message", ""))) and entry["time"] >= latest.get(run_id, ("",))[0]:
            latest[run_id] = (entry["time"], unit)
    return {run_id: unit for run_id, (_, unit) in latest.items()}
