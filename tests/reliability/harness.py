"""What the reliability scenarios share: a stack with short leases, ways to drive and inspect it, and
the judging of each run against the promise its scenario makes.

Nothing in a row of docs/RELIABILITY.md is written as a figure: a scenario hands back one Verdict per
run (or message, or request), each built from what the run left behind (the lines its command
appended to a ledger in its workspace, its record in Firestore, the job's and the recorder's log
lines about it, the dead letters naming it), and the row's counts are counted from those verdicts.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from devstack.config import HOST, Ports
from devstack.stack import Stack, start_stack
from eventarc.definitions import SANDBOX_JOB_TRIGGER, STATUS_RECORDER_SUBSCRIPTION
from tests import PORT_SHIFT
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

PORTS = Ports.shifted(16000 + PORT_SHIFT)
TOKEN = "reliability"
TERMINAL = ("succeeded", "failed")
RECORDER = "status-recorder"
LEASE_SECONDS = 6
# Short leases, so that a dead job's run is retaken or swept within a test's patience.
# The load scenario is one owner posting as fast as it can: the per-owner limits step aside.
STACK_ENV = {
    "VIBESDK_API_TOKEN": TOKEN,
    "VIBESDK_LEASE_SECONDS": str(LEASE_SECONDS),
    "VIBESDK_REQUESTS_PER_MINUTE": "1000000",
    "VIBESDK_MAX_ACTIVE_RUNS_PER_OWNER": "100000",
    # An owner's share over both instances, as one instance's was: each of the flood's long actions
    # holds its push until the 10 s ack deadline, and the emulator pushes only a few at once (real
    # Pub/Sub's push window grows far wider), so a share of all 16 workers held the emulator's pushes
    # and the victim's waited ~100 s behind them, with no refusal ever made.
    "VIBESDK_MAX_ACTIONS_PER_OWNER": "4",
}

# The time scale "stuck" is judged on. One quick action, queue to terminal, on this loaded two-core
# machine; one redelivery of a request, as the trigger's subscription makes it (a delivery cut at the
# ack deadline, then the first backoff); one redelivery of a status event (the same, for the status
# subscription, whose backoff grows to its maximum while the recorder does not answer).
ACTION_SECONDS = 5.0
REQUEST_REDELIVERY_SECONDS = float(
    SANDBOX_JOB_TRIGGER.managed.ack_deadline_seconds + SANDBOX_JOB_TRIGGER.managed.retry.minimum_backoff_seconds
)
STATUS_REDELIVERY_SECONDS = float(
    STATUS_RECORDER_SUBSCRIPTION.ack_deadline_seconds + STATUS_RECORDER_SUBSCRIPTION.retry.maximum_backoff_seconds
)

# The answers that acknowledge a push; any other is a negative ack (../shared/DESIGN.md).
ACKNOWLEDGING_STATUSES = frozenset({102, 200, 201, 202, 204})

T = TypeVar("T")

# Where each job instance's log stood at a moment (unit -> size in bytes): the sandbox job runs as
# several instances (devstack/config.py job_unit), each appending to a log of its own.
Mark = Mapping[str, int]


def backed_off(nacks: int) -> float:
    """How long Pub/Sub's exponential backoff (the trigger's 10 s to 600 s) holds a message after
    `nacks` negative acks in a row, at most."""
    retry = SANDBOX_JOB_TRIGGER.managed.retry
    return float(sum(min(retry.maximum_backoff_seconds, retry.minimum_backoff_seconds * 2**k) for k in range(nacks)))


def patience(actions: int, redeliveries: int = 0, action_seconds: float = ACTION_SECONDS) -> float:
    """How long a scenario's runs may take before they count as stuck.

    `actions` actions one after another (one session's runs are), each `action_seconds`, after
    `redeliveries` redeliveries of a request; one more of each to spare.
    """
    return (actions + 1) * action_seconds + (redeliveries + 1) * REQUEST_REDELIVERY_SECONDS


@dataclass(frozen=True)
class Verdict:
    """One run (or message, or request) of a scenario as measured, against the scenario's promise.

    effects: how many times its effect was seen (the lines its command appended to the ledger, the
    job's executions of it, the dead letters naming it, the sweeper's endings of it): fewer than
    `due` is lost, two or more duplicated. due: what its promise owes (0 where it must never take
    effect, such as a request refused with 503). terminal: whether it reached a terminal state
    within the scenario's bound (None: there is no run). broken: each part of the promise it did
    not keep, as measured.
    """

    name: str
    effects: int
    due: int
    terminal: bool | None
    broken: tuple[str, ...]

    @property
    def lost(self) -> bool:
        return self.effects < self.due

    @property
    def duplicated(self) -> bool:
        return self.effects > 1

    @property
    def stuck(self) -> bool:
        return self.terminal is False

    @property
    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"lost: its effect seen {self.effects} times, {self.due} due")
        if self.duplicated:
            found.append(f"duplicated: its effect seen {self.effects} times")
        if self.stuck:
            found.append("stuck: not terminal within the scenario's bound")
        return found + list(self.broken)


@dataclass(frozen=True)
class Row:
    """A scenario's line in the table: every count is counted from its verdicts.

    checks: what the scenario itself found wrong beyond single runs (the fault hit no run in
    flight, the fuzzer found a 5xx, the scenario crashed): each fails the row.
    """

    scenario: str
    injected: str
    verdicts: tuple[Verdict, ...]
    note: str
    checks: tuple[str, ...] = ()

    @property
    def runs(self) -> int:
        return len(self.verdicts)

    @property
    def lost(self) -> int:
        return sum(verdict.lost for verdict in self.verdicts)

    @property
    def duplicated(self) -> int:
        return sum(verdict.duplicated for verdict in self.verdicts)

    @property
    def stuck(self) -> int:
        return sum(verdict.stuck for verdict in self.verdicts)

    @property
    def broken(self) -> int:
        return sum(bool(verdict.broken) for verdict in self.verdicts) + len(self.checks)

    @property
    def problems(self) -> list[str]:
        return list(self.checks) + [f"{v.name}: {problem}" for v in self.verdicts for problem in v.problems]

    @property
    def result(self) -> str:
        return "pass" if self.runs and not self.problems else "FAIL"

    def __str__(self) -> str:
        counts = f"runs={self.runs} lost={self.lost} duplicated={self.duplicated} stuck={self.stuck}"
        return f"{self.scenario}: {counts} broken={self.broken} {self.result}; {self.note}" + "".join(
            f"\n  {problem}" for problem in self.problems
        )


COLUMNS = ("scenario", "injected", "runs", "lost", "duplicated", "stuck", "broken promise", "result", "measured")


def cells(row: Row) -> list[str]:
    note = row.note
    if row.problems:
        shown = "; ".join(row.problems[:3]) + (f"; and {len(row.problems) - 3} more" if len(row.problems) > 3 else "")
        note = f"{note}. FAILED: {shown}"
    values = [row.scenario, row.injected, row.runs, row.lost, row.duplicated, row.stuck, row.broken, row.result, note]
    return [str(value).replace("|", "\\|").replace("\n", " ") for value in values]


def table(rows: Iterable[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def tally(values: Iterable[object]) -> str:
    """How often each measured value came up: '1 ×8, 2 ×2'."""
    counts = Counter(str(value) for value in values)
    return ", ".join(f"{value} ×{count}" for value, count in sorted(counts.items())) or "none"


def seqs(run: dict[str, Any]) -> list[int]:
    return [int(t["seq"]) for t in run.get("transitions") or []]


def is_terminal(run: dict[str, Any] | None) -> bool:
    return bool(run) and run["status"] in TERMINAL and run.get("seq") == 2


def judge(
    name: str,
    run: dict[str, Any] | None,
    effects: int,
    status: str,
    error: str | None = None,
    path: tuple[int, ...] = (0, 1, 2),
    claims: int | None = None,
    due: int = 1,
    broken: Iterable[str] = (),
) -> Verdict:
    """A run's verdict: the status (and error) and the transitions its promise states, each once."""
    found = list(broken)
    if run is None:
        return Verdict(name, effects, due, False, (*found, "no run record"))
    terminal = is_terminal(run)
    if terminal and run["status"] != status:
        found.append(f"ended {run['status']} ({run.get('error')}), not {status}")
    if terminal and error is not None and error not in (run.get("error") or ""):
        found.append(f"ended with error {run.get('error')!r}, not {error!r}")
    if terminal and tuple(seqs(run)) != path:
        found.append(f"transitions {seqs(run)}, not {list(path)}")
    if claims is not None and int(run.get("claims") or 0) != claims:
        found.append(f"claimed {int(run.get('claims') or 0)} times, not {claims}")
    return Verdict(name, effects, due, terminal, tuple(found))


@dataclass(frozen=True)
class LogEntry:
    offset: int  # where the line starts in its unit's log file
    entry: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.entry.get("message", ""))

    @property
    def run_id(self) -> str | None:
        return self.entry.get("runId")


# The job's lines about a run it executes: "{action} started (delivery attempt N)", then
# "{action} succeeded" or "{action} failed...".
STARTED = re.compile(r"^\w+ started \(delivery attempt (\w+)\)$")
ENDED = re.compile(r"^\w+ (succeeded|failed)")
# The recorder's line about each status event it applies: "{status} (seq N): {decision}".
DECIDED = re.compile(r"^(\w+) \(seq (\d+)\): (.+)$")


class Harness:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = Settings.from_env(stack.env)
        self.store = RunStore(clients.firestore_client(self.settings))
        self.bus = Bus(clients.publisher_client(self.settings), self.settings.project)
        self.api = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    def close(self) -> None:
        self.api.close()

    # --- driving
    def session(self, template: str = "python-app") -> str:
        created = self.api.post("/api/agent", json={"templateName": template}).raise_for_status().json()
        run = self.wait_run(created["sessionId"], created["runId"])
        assert run["status"] == "succeeded", run.get("error")
        # At rest: the live preview's first build (refreshPreview, functions/live.py) done too, so a
        # scenario's runs are the session's only ones.
        self.wait_for(
            f"session {created['sessionId']} at rest",
            lambda: self.store.unfinished_in_session(created["sessionId"]),
            lambda unfinished: not unfinished,
            120,
        )
        return str(created["sessionId"])

    def queue(self, session_id: str, action: str, params: dict[str, Any] | None = None) -> str:
        response = self.api.post(f"/api/agent/{session_id}/actions", json={"action": action, "params": params or {}})
        return str(response.raise_for_status().json()["runId"])

    def request(self, session_id: str, action: str, params: dict[str, Any], owner: str = "local") -> SandboxRequest:
        """A run queued in Firestore but not published: the test decides how it is delivered."""
        request = SandboxRequest(
            sessionId=session_id,
            runId=str(uuid.uuid4()),
            action=action,
            params=params,
            issuedAt=utcnow(),
            owner=owner,
        )
        self.store.queue_run(request, new_session=False)
        return request

    def cloudevent(self, request: SandboxRequest, message_id: str) -> tuple[dict[str, str], str]:
        headers = {
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
            "ce-source": f"//pubsub.googleapis.com/projects/{self.stack.project}/topics/vibesdk-sandbox-requests",
            "ce-id": message_id,
            "Content-Type": "application/json",
        }
        body = {
            "subscription": "projects/p/subscriptions/direct",
            "message": {
                "data": base64.b64encode(request.model_dump_json().encode()).decode(),
                "attributes": request.attributes(),
                "messageId": message_id,
            },
        }
        return headers, json.dumps(body)

    # --- the sandbox job's instances
    @property
    def jobs(self) -> list[str]:
        """The job's instances, as the supervisor names them: sandbox-job, sandbox-job-2, ..."""
        return self.stack.job_units

    def job_url(self, turn: int) -> str:
        """The instance a direct push number `turn` goes to: each in turn, as a load balancer spreads them."""
        return self.stack.job_url(turn % self.stack.job_count)

    def kill(self, unit: str, sig: int) -> None:
        """Signal the unit's process group and wait until its leader has exited."""
        self.stack.supervisor.kill(unit, sig)

    def kill_jobs(self, sig: int) -> None:
        """Signal every job instance at once, then wait until each has exited: the fault hits every
        run in flight, wherever it runs, and no instance goes on taking work while another drains."""
        with ThreadPoolExecutor(len(self.jobs)) as pool:
            list(pool.map(lambda unit: self.kill(unit, sig), self.jobs))

    def restart_jobs(self) -> None:
        """A new process for every job instance, all started before any is waited for: while every
        instance is down the router's pushes fail (503), and the emulator backs a message off for
        minutes after a few such failures in a row."""
        children = [self.stack.supervisor.restart(unit) for unit in self.jobs]
        for child in children:
            self.stack.supervisor.wait_for_port(child, HOST, int(child.env["PORT"]))

    def pause(self, unit: str) -> None:
        os.killpg(self.stack.supervisor.child(unit).process.pid, signal.SIGSTOP)

    def resume(self, unit: str) -> None:
        os.killpg(self.stack.supervisor.child(unit).process.pid, signal.SIGCONT)

    def restart(self, unit: str) -> None:
        child = self.stack.supervisor.restart(unit)
        port = int(child.env["PORT"])
        self.stack.supervisor.wait_for_port(child, HOST, port)

    # --- waiting: for a condition, within a bound; never a blind sleep
    @staticmethod
    def until(measure: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float = 0.2) -> T:
        """Measure until done(measurement) or the timeout; the last measurement either way."""
        deadline = time.monotonic() + timeout
        while True:
            value = measure()
            if done(value) or time.monotonic() > deadline:
                return value
            time.sleep(interval)

    def wait_for(self, what: str, measure: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
        """As until(), but a condition the scenario cannot go on without: not met is an error naming it."""
        value = self.until(measure, done, timeout)
        if not done(value):
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last seen: {value!r})"[:2000])
        return value

    # --- inspecting
    def run(self, session_id: str, run_id: str) -> dict[str, Any]:
        return self.store.get_run(session_id, run_id).model_dump()

    def runs(self, session_of: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Runs (run id -> session id), read in one call."""
        refs = [self.store._calls.run_ref(session, run_id) for run_id, session in session_of.items()]
        snapshots = self.store._calls.read(refs)
        return {
            run_id: snapshots[ref.path].to_dict() for (run_id, _), ref in zip(session_of.items(), refs, strict=True)
        }

    def wait_run(self, session_id: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
        return self.until(lambda: self.run(session_id, run_id), is_terminal, timeout)

    def wait_runs(self, session_of: dict[str, str], timeout: float) -> dict[str, dict[str, Any]]:
        """The runs once every one is terminal, or as they are when the bound is reached."""
        return self.until(lambda: self.runs(session_of), lambda runs: all(map(is_terminal, runs.values())), timeout)

    def ledger(self, session_id: str) -> list[str]:
        """Lines the session's commands appended to ledger.txt: one per execution."""
        run_id = self.queue(session_id, "getFiles", {"filePaths": ["ledger.txt"]})
        run = self.wait_run(session_id, run_id)
        assert run["status"] == "succeeded", f"the ledger of {session_id} could not be read: {run.get('error')}"
        files = run["result"]["files"]
        return files[0]["fileContents"].split() if files else []

    def log_path(self, unit: str) -> Path:
        # The same file across restarts: the supervisor appends to it.
        return Path(self.stack.supervisor.log_dir) / f"{unit}.log"

    def log_size(self, unit: str) -> int:
        return self.log_path(unit).stat().st_size

    def log(self, unit: str, start: int = 0, end: int | None = None) -> list[LogEntry]:
        """The unit's JSON log lines that start within [start, end) of its log file."""
        entries = []
        with self.log_path(unit).open("rb") as file:
            file.seek(start)
            offset = start
            for line in file:
                if end is not None and offset >= end:
                    break
                if line.startswith(b"{") and line.endswith(b"\n"):
                    try:
                        entries.append(LogEntry(offset, json.loads(line)))
                    except ValueError:
                        pass
                offset += len(line)
        return entries

    def job_mark(self) -> dict[str, int]:
        """Where every job instance's log stands now."""
        return {unit: self.log_size(unit) for unit in self.jobs}

    def job_log(self, start: Mark | None = None, end: Mark | None = None) -> dict[str, list[LogEntry]]:
        """Each job instance's JSON log lines between the marks (from its start, to its end, by default)."""
        return {unit: self.log(unit, (start or {}).get(unit, 0), (end or {}).get(unit)) for unit in self.jobs}

    def starts(
        self, run_ids: Iterable[str], start: Mark | None = None, end: Mark | None = None
    ) -> dict[str, Counter[str]]:
        """How many times each job instance started each run's action (its "started" log lines)."""
        wanted = set(run_ids)
        return {
            unit: Counter(e.run_id for e in entries if e.run_id in wanted and STARTED.match(e.message))
            for unit, entries in self.job_log(start, end).items()
        }

    def executions(self, run_ids: Iterable[str], start: Mark | None = None, end: Mark | None = None) -> Counter[str]:
        """How many times the job, on any instance, started each run's action."""
        return sum(self.starts(run_ids, start, end).values(), Counter())

    def ended(self, run_ids: Iterable[str], start: Mark | None = None, end: Mark | None = None) -> Counter[str]:
        """How many times the job, on any instance, ended each run's action ("succeeded" / "failed" lines)."""
        wanted = set(run_ids)
        return Counter(
            e.run_id
            for entries in self.job_log(start, end).values()
            for e in entries
            if e.run_id in wanted and ENDED.match(e.message)
        )

    def decisions(self, run_ids: Iterable[str], start: int = 0) -> dict[str, list[tuple[str, int, str]]]:
        """The recorder's decision on each status event of each run, in order: (status, seq, decision)."""
        found: dict[str, list[tuple[str, int, str]]] = {run_id: [] for run_id in run_ids}
        for e in self.log(RECORDER, start):
            match = DECIDED.match(e.message)
            if match and e.run_id in found:
                found[e.run_id].append((match[1], int(match[2]), match[3]))
        return found


def ledger_command(token: str, before: str = "") -> dict[str, Any]:
    return {"commands": [f"{before}echo {token} >> ledger.txt"]}


def start(log_dir: Path) -> Stack:
    return start_stack(PORTS, dict(os.environ) | STACK_ENV, log_dir)
