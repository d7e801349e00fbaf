"""One owner against a shared job: the job's memory under the red team's attacks, and another owner's wait.

Driven through the running stack as the red team did it; the job's memory is the resident size of
its whole process tree, sampled every 50 ms, against its size at rest measured just before.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import Stack
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

# The bound this runtime sets (docs/SECURITY.md): an attack may raise the job by this much at most.
MEMORY_BOUND_MIB = 200
VICTIM_BOUND_SECONDS = 30.0
FLOOD = 12
SAMPLE_SECONDS = 0.05


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(child) for child in task.read_text().split()]
    return found


def _rss_mib(pid: int) -> float:
    total = 0
    for member in _tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except FileNotFoundError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


@contextmanager
def _peak(pid: int) -> Iterator[dict[str, float]]:
    """The job's resident size at rest, then its peak while the block runs."""
    seen = {"rest_mib": _rss_mib(pid), "peak_mib": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            seen["peak_mib"] = max(seen["peak_mib"], _rss_mib(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


class _Driver:
    def __init__(self, stack: Stack, token: str) -> None:
        self.api = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        settings = Settings.from_env(stack.env)
        self.store = RunStore(clients.firestore_client(settings))
        self.bus = Bus(clients.publisher_client(settings), settings.project)

    def wait(self, run_url: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api.get(run_url).json()
            if run["status"] in ("succeeded", "failed"):
                return dict(run)
            time.sleep(0.2)
        raise TimeoutError(run_url)

    def session(self) -> str:
        created = self.api.post("/api/agent", json={"templateName": "static-site"}).json()
        assert self.wait(created["runUrl"])["status"] == "succeeded"
        return str(created["sessionId"])

    def act(self, session: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        queued = self.api.post(f"/api/agent/{session}/actions", json={"action": action, "params": params}).json()
        return self.wait(queued["runUrl"])

    def as_owner(self, session: str, owner: str, command: str) -> SandboxRequest:
        request = SandboxRequest(
            sessionId=session,
            runId=str(uuid.uuid4()),
            action="executeCommands",
            params={"commands": [command]},
            issuedAt=utcnow(),
            owner=owner,
        )
        self.store.queue_run(request, new_session=False)
        self.bus.publish_request(request)
        return request


def attacks(stack: Stack, token: str) -> dict[str, Any]:
    driver = _Driver(stack, token)
    job = stack.supervisor.child("sandbox-job").process.pid
    session = driver.session()
    cases: dict[str, Callable[[], Any]] = {
        "two 250 MB outputs": lambda: driver.act(
            session, "executeCommands", {"commands": ["head -c 250000000 /dev/zero; head -c 250000000 /dev/zero >&2"]}
        ),
        "getLogs over 120 MB of logs": lambda: (
            [
                driver.act(session, "executeCommands", {"commands": ["head -c 15000000 /dev/zero | tr '\\0' a"]})
                for _ in range(8)
            ],
            driver.act(session, "getLogs", {}),
        ),
        "750 MB in /dev/shm": lambda: driver.act(
            session, "executeCommands", {"commands": ["head -c 750000000 /dev/zero > /dev/shm/kept; sleep 2"]}
        ),
    }
    rows = []
    for name, attack in cases.items():
        with _peak(job) as seen:
            attack()
        rows.append(
            {
                "attack": name,
                "rest_mib": round(seen["rest_mib"], 1),
                "peak_mib": round(seen["peak_mib"], 1),
                "added_mib": round(seen["peak_mib"] - seen["rest_mib"], 1),
            }
        )
    flood_sessions = [driver.session() for _ in range(FLOOD + 1)]
    for flooded in flood_sessions[:FLOOD]:
        driver.as_owner(flooded, "mallory", "sleep 25")
    time.sleep(2)
    started = time.monotonic()
    victim = driver.as_owner(flood_sessions[-1], "victim", "true")
    while driver.store.get_run(victim.sessionId, victim.runId)["status"] not in ("succeeded", "failed"):
        time.sleep(0.1)
    waited = round(time.monotonic() - started, 1)
    driver.api.close()
    return {
        "memory": rows,
        "memory_bound_mib": MEMORY_BOUND_MIB,
        "flood": {"actions": FLOOD, "each": "sleep 25", "victim_wait_s": waited, "bound_s": VICTIM_BOUND_SECONDS},
    }
