"""One owner against a shared job: what the red team's attacks hold, and another owner's wait under a flood.

Driven through the running stack as the red team did it. Every 50 ms two things are sampled: the
resident size of each job instance's whole process tree (against its size at rest just before; an
attack's actions land on either instance), and the
bytes the attack's own scratch folder holds (its /tmp and /dev/shm, on the instance's filesystem:
on Cloud Run an in-memory one, so instance memory as much as the job's), against the /tmp quota.
Each attack's runs and their commands' outcomes are reported; the flood's runs are watched in
Firestore, to show it held the job while the victim waited, and then waited for to the end.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import Stack
from eventarc.definitions import SANDBOX_JOB_TRIGGER
from eventarc.router import delivery_mode
from functions.fairness import default_share
from functions.isolation import Limits
from vibesdk_cli.progress import TERMINAL, wait_for_run
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.names import RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

# The bound this runtime sets (docs/SECURITY.md): an attack may raise the job by this much at most.
MEMORY_BOUND_MIB = 200
VICTIM_BOUND_SECONDS = 30.0
# How long the victim and the flood are waited for before the bench says they never ended.
VICTIM_TIMEOUT_SECONDS = 120.0
FLOOD_START_TIMEOUT_SECONDS = 60.0
FLOOD_END_TIMEOUT_SECONDS = 300.0
FLOOD = 12
FLOOD_COMMAND = "sleep 25"
SAMPLE_SECONDS = 0.05
ERROR_CHARS = 300  # of a run's error kept in the results (its printable characters)
WATCH_SECONDS = 0.2
# A command's scratch folder, as the job hands it to bubblewrap (--bind) or to Cloud Run's sandbox (--mount).
SCRATCH = re.compile(r"(/[^\s,=]*/vibesdk-run-[^/\s,]+)")


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").glob("*/children"):
                todo += [int(child) for child in task.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _rss_mib(members: list[int]) -> float:
    total = 0
    for member in members:
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def _scratch_folders(members: list[int]) -> set[str]:
    """The scratch folders of the commands the job runs now, read from their sandboxes' command lines."""
    found = set()
    for member in members:
        try:
            argv = Path(f"/proc/{member}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except (FileNotFoundError, ProcessLookupError):
            continue
        for arg in argv:
            found.update(SCRATCH.findall(arg))
    return found


def _held_bytes(folder: str) -> int:
    """Bytes the filesystem holds for the folder's files (allocated blocks, as the quota counts them)."""
    total, todo = 0, [folder]
    while todo:
        try:
            entries = os.scandir(todo.pop())
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                except FileNotFoundError:
                    pass
    return total


@contextmanager
def _peak(pids: list[int]) -> Iterator[dict[str, Any]]:
    """Each job instance's resident size at rest, then its peak, and the commands' scratch peak, while the
    block runs (an attack's actions land on either instance: each is watched)."""
    seen: dict[str, Any] = {
        "rest_mib": {pid: _rss_mib(_tree(pid)) for pid in pids},
        "peak_mib": dict.fromkeys(pids, 0.0),
        "scratch_bytes": 0,
        "folders": set(),
    }
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            folders = set()
            for pid in pids:
                members = _tree(pid)
                seen["peak_mib"][pid] = max(seen["peak_mib"][pid], _rss_mib(members))
                folders |= _scratch_folders(members)
            seen["folders"] |= folders
            seen["scratch_bytes"] = max(seen["scratch_bytes"], sum(_held_bytes(folder) for folder in folders))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def _run_path(session: str, run: str) -> str:
    return f"{RUNS_COLLECTION}/{session}/{RUNS_SUBCOLLECTION}/{run}"


class _Driver:
    def __init__(self, stack: Stack, token: str) -> None:
        self.api = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        settings = Settings.from_env(stack.env)
        self.firestore = clients.firestore_client(settings)
        self.store = RunStore(self.firestore)
        self.bus = Bus(clients.publisher_client(settings), settings.project)

    def wait(self, run_url: str, timeout: float = 300) -> dict[str, Any]:
        run = wait_for_run(lambda: self.api.get(run_url).json(), timeout, every=WATCH_SECONDS)
        if run["status"] not in TERMINAL:
            raise TimeoutError(f"{run_url} did not end within {timeout:g} s (last status {run.get('status')!r})")
        return run

    def session(self) -> str:
        created = self.api.post("/api/agent", json={"templateName": "static-site"}).json()
        run = self.wait(created["runUrl"])
        assert run["status"] == "succeeded", f"a session for the attacks did not start: {run.get('error')}"
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

    def statuses(self, requests: list[SandboxRequest]) -> dict[str, str]:
        """Each run's status now, by run id, in one batched read."""
        refs = [self.firestore.document(_run_path(r.sessionId, r.runId)) for r in requests]
        found = {}
        for snapshot in self.firestore.get_all(refs, field_paths=["status"]):
            found[snapshot.reference.id] = (snapshot.to_dict() or {}).get("status", "missing")
        return found


def _outcome(run: dict[str, Any]) -> dict[str, Any]:
    """A run's status and, for commands, each one's exit code and why it was stopped (if it was)."""
    commands = []
    for entry in (run.get("result") or {}).get("results", []):
        killed = re.search(r"\[killed: ([^\]]+)\]", entry.get("error") or "")
        commands.append(
            {"exit_code": entry.get("exitCode"), "killed": killed.group(1) if killed else None, "ran": True}
        )
    error = re.sub(r"[^\x20-\x7e\n]", "", run.get("error") or "")[:ERROR_CHARS]
    return {"action": run.get("action"), "status": run["status"], "commands": commands, "error": error}


def _describe(outcomes: list[dict[str, Any]]) -> str:
    """`status (exit N[, killed: why])` per run, the same ones counted together."""
    parts = []
    for outcome in outcomes:
        details = [
            f"exit {c['exit_code']}" + (f", killed: {c['killed']}" if c["killed"] else "") for c in outcome["commands"]
        ]
        parts.append(f"{outcome['action']} {outcome['status']}" + (f" ({'; '.join(details)})" if details else ""))
    counted = Counter(parts)
    return "; ".join(f"{count} × {part}" if count > 1 else part for part, count in counted.items())


def attacks(stack: Stack, token: str) -> dict[str, Any]:
    driver = _Driver(stack, token)
    jobs = [stack.supervisor.child(unit) for unit in stack.job_units]
    job_settings = Settings.from_env(jobs[0].env)
    tmp_quota = Limits.of(job_settings).tmp_bytes
    # An owner's share counts over every instance (functions/fairness.py).
    share = job_settings.max_actions_per_owner or default_share(job_settings.threads, job_settings.job_instances)
    retry = SANDBOX_JOB_TRIGGER.subscription(delivery_mode(stack.env)).retry
    session = driver.session()
    # Each attack: its runs, and a check that it did what the red team meant (its commands ran).
    cases: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "two 250 MB outputs": lambda: [
            driver.act(
                session,
                "executeCommands",
                {"commands": ["head -c 250000000 /dev/zero; head -c 250000000 /dev/zero >&2"]},
            )
        ],
        "getLogs over 120 MB of logs": lambda: [
            *(
                driver.act(session, "executeCommands", {"commands": ["head -c 15000000 /dev/zero | tr '\\0' a"]})
                for _ in range(8)
            ),
            driver.act(session, "getLogs", {}),
        ],
        "750 MB in /dev/shm": lambda: [
            driver.act(
                session, "executeCommands", {"commands": ["head -c 750000000 /dev/zero > /dev/shm/kept; sleep 2"]}
            )
        ],
    }
    rows = []
    for name, attack in cases.items():
        pids = [job.process.pid for job in jobs]
        with _peak(pids) as seen:
            outcomes = [_outcome(run) for run in attack()]
        ran = all(o["commands"] for o in outcomes if o["action"] == "executeCommands")
        # The instance the attack raised most.
        worst = max(pids, key=lambda pid: seen["peak_mib"][pid] - seen["rest_mib"][pid])
        rows.append(
            {
                "attack": name,
                "runs": outcomes,
                "outcome": _describe(outcomes),
                "ran": ran,
                "instance": jobs[pids.index(worst)].name,
                "rest_mib": round(seen["rest_mib"][worst], 1),
                "peak_mib": round(seen["peak_mib"][worst], 1),
                "added_mib": round(seen["peak_mib"][worst] - seen["rest_mib"][worst], 1),
                "scratch_folders_seen": len(seen["folders"]),
                "scratch_peak_bytes": seen["scratch_bytes"],
                "scratch_peak_mib": round(seen["scratch_bytes"] / (1 << 20), 1),
            }
        )
    return {
        "memory": rows,
        "memory_bound_mib": MEMORY_BOUND_MIB,
        "tmp_quota_bytes": tmp_quota,
        "tmp_quota_mib": round(tmp_quota / (1 << 20), 1),
        "sample_ms": round(SAMPLE_SECONDS * 1000),
        "flood": _flood(driver, share)
        | {
            "retry_backoff_s": [retry.minimum_backoff_seconds, retry.maximum_backoff_seconds],
            "instances": len(jobs),
        },
    }


def _flood(driver: _Driver, share: int) -> dict[str, Any]:
    """FLOOD long actions of one owner, then one quick action of another: how long the latter waits.

    The victim is queued only once the flood holds the owner's whole share of the job; the flood's
    runs are watched while the victim waits, and then waited for to their end.
    """
    sessions = [driver.session() for _ in range(FLOOD + 1)]
    flood = [driver.as_owner(flooded, "mallory", FLOOD_COMMAND) for flooded in sessions[:FLOOD]]
    began = time.monotonic()
    deadline = began + FLOOD_START_TIMEOUT_SECONDS
    while (running := Counter(driver.statuses(flood).values())["running"]) < share and time.monotonic() < deadline:
        time.sleep(WATCH_SECONDS)
    running_at_queue = running
    started = time.monotonic()
    victim = driver.as_owner(sessions[-1], "victim", "true")
    most_running, victim_status, waited = running_at_queue, None, None
    while time.monotonic() - started < VICTIM_TIMEOUT_SECONDS:
        seen = driver.statuses([*flood, victim])
        most_running = max(most_running, Counter(seen[r.runId] for r in flood)["running"])
        if seen[victim.runId] in TERMINAL:
            waited, victim_status = round(time.monotonic() - started, 1), seen[victim.runId]
            break
        time.sleep(WATCH_SECONDS)
    running_at_end = Counter(driver.statuses(flood).values())["running"]
    deadline = time.monotonic() + FLOOD_END_TIMEOUT_SECONDS
    while (ends := driver.statuses(flood)) and any(s not in TERMINAL for s in ends.values()):
        if time.monotonic() > deadline:
            break
        most_running = max(most_running, Counter(ends.values())["running"])
        time.sleep(WATCH_SECONDS)
    driver.api.close()
    occupied = running_at_queue >= share
    return {
        "actions": FLOOD,
        "each": FLOOD_COMMAND,
        "owner_share": share,
        "running_when_victim_queued": running_at_queue,
        "running_when_victim_ended": running_at_end,
        "most_running": most_running,
        "occupied": occupied,
        "victim_status": victim_status or f"not ended within {VICTIM_TIMEOUT_SECONDS:g} s",
        "victim_wait_s": waited,
        "victim_timeout_s": VICTIM_TIMEOUT_SECONDS,
        "flood_statuses": dict(Counter(ends.values())),
        "flood_s": round(time.monotonic() - began, 1),
        "flood_timeout_s": FLOOD_END_TIMEOUT_SECONDS,
        "bound_s": VICTIM_BOUND_SECONDS,
    }
