"""Which of the sandbox job's instances ran each run, as their own logs say, and which holds a
session's working copy.

Each instance is a unit of its own with its own log file (`<log_dir>/<unit>.log`, devstack/stack.py);
the job logs "{action} started (delivery attempt N)" with the run's runId and sessionId as it starts
an action (functions/job.py), and "negative ack of ...: run R waits for run E of its session" as it
refuses a delivery for the session's order (functions/main.py); it logs no timing of its phases.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from devstack.stack import Stack
from functions.local_disk import LocalDisk

STARTED = re.compile(r"^\w+ started \(delivery attempt \w+\)$")
# A delivery refused for the session's order (functions/main.py's negative ack of job.py's Busy); the
# line is logged outside the run's context, so its run is read from the message.
# A workspace restore (functions/workspace.py), in its run's context.
RESTORED = re.compile(r"^restored (\d+) files: (\d+) bytes read in ([\d.]+) s$")
# An instance's warm-up as it started (functions/warmup.py).
READY = "instance ready: "
REFUSED = re.compile(r"^negative ack of \S+: run (\S+) waits for run \S+ of its session")


class JobLogs:
    def __init__(self, stack: Stack) -> None:
        self.units = stack.job_units
        self.log_dir = Path(stack.supervisor.log_dir)

    def _entries(self, marker: bytes) -> list[tuple[str, dict[str, Any]]]:
        """Every instance's JSON lines so far that hold `marker`: (unit, line)."""
        found = []
        for unit in self.units:
            path = self.log_dir / f"{unit}.log"
            if not path.exists():
                continue
            with path.open("rb") as lines:
                for line in lines:
                    if not line.startswith(b"{") or marker not in line:
                        continue
                    try:
                        found.append((unit, json.loads(line)))
                    except ValueError:
                        continue
        return found

    def starts(self) -> list[tuple[str, str, str]]:
        """Every action start in every instance's log so far: (unit, sessionId, runId)."""
        return [
            (unit, str(entry.get("sessionId")), str(entry["runId"]))
            for unit, entry in self._entries(b" started (delivery attempt ")
            if STARTED.match(entry.get("message", "")) and entry.get("runId")
        ]

    def refused_on(self) -> dict[str, list[str]]:
        """The instances that refused a delivery of each run for its session's order, one entry a refusal."""
        found: dict[str, list[str]] = {}
        for unit, entry in self._entries(b"negative ack of "):
            if match := REFUSED.match(entry.get("message", "")):
                found.setdefault(match[1], []).append(unit)
        return found

    def restores(self) -> dict[str, dict[str, float]]:
        """Each run's workspace restore (its last, when it restored more than once): files, bytes, seconds."""
        found = {}
        for _, entry in self._entries(b"bytes read in"):
            if (match := RESTORED.match(entry.get("message", ""))) and entry.get("runId"):
                found[str(entry["runId"])] = {"files": int(match[1]), "bytes": int(match[2]), "s": float(match[3])}
        return found

    def warm_ups(self) -> dict[str, str]:
        """What each instance's warm-up did as it last started, as it logged it."""
        return {unit: entry["message"][len(READY) :] for unit, entry in self._entries(READY.encode())}

    def ran_on(self) -> dict[str, str]:
        """The instance that started each run (the last, when a lapsed lease was taken over)."""
        return {run_id: unit for unit, _, run_id in self.starts()}

    def session_spread(self, session_id: str) -> dict[str, int]:
        """How many of the session's runs each instance started."""
        return dict(Counter(unit for unit, session, _ in self.starts() if session == session_id))


def session_root(stack: Stack, session_id: str) -> Path:
    """The workspace root of the instance whose copy of the session changed last: a session's copy may
    be on either instance's disk, or on both (one of them stale until it runs the session again)."""
    homes = [LocalDisk(stack.job_root(index)).home(session_id) for index in range(stack.job_count)]
    held = [home for home in homes if home.files.is_dir()]
    if not held:
        raise RuntimeError(f"no job instance holds a working copy of session {session_id}")
    newest = max(held, key=lambda home: (home.state if home.state.exists() else home.files).stat().st_mtime)
    return newest.path.parent
