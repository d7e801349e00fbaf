"""Waiting for a run to end (on the server, ?wait=), or watching it: each transition as it lands, its time since the start, the result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from typing import IO, Any

from vibesdk_cli.client import Client

TERMINAL = ("succeeded", "failed")
POLL_SECONDS = 0.5
# Each waiting GET's `wait`: within the server's most (VIBESDK_MAX_WAIT_SECONDS, 60 s by default).
WAIT_SECONDS = 25.0


def _at(transition: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(transition["at"])


def wait_for_run(
    fetch: Callable[[], dict[str, Any]],
    timeout: float,
    every: float = POLL_SECONDS,
    seen: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fetch the run every `every` s until it has ended or `timeout` s have passed: for a fetch that
    cannot wait on the server (until_ended waits there).

    Returns the last run fetched: its status says which, and each caller reports a run that did
    not end its own way. `seen`, if given, is shown every run fetched.
    """
    deadline = time.monotonic() + timeout
    while True:
        run = fetch()
        if seen:
            seen(run)
        if run["status"] in TERMINAL or time.monotonic() > deadline:
            return run
        time.sleep(every)


def until_ended(client: Client, session: str, run_id: str, timeout: float) -> dict[str, Any]:
    """The run once it has ended, or as it stands after `timeout` s: GETs that wait on the server,
    each answered the moment the run ends."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        run = client.run(session, run_id, wait=max(0.0, min(WAIT_SECONDS, left)))
        if run["status"] in TERMINAL or left <= 0:
            return run


def watch(
    client: Client, session: str, run_id: str, out: IO[str] = sys.stdout, timeout: float = 1800
) -> dict[str, Any]:
    """Print each transition of the run as it lands (the session's events stream) until the run
    ends; returns the run."""
    run = client.run(session, run_id)  # a wrong id fails here, not after the timeout
    live = out.isatty()
    first: datetime | None = None

    def show(transition: dict[str, Any]) -> None:
        nonlocal first
        first = first or _at(transition)
        if live:
            out.write("\r\033[K")
        out.write(f"  +{(_at(transition) - first).total_seconds():6.2f} s  {transition['status']}\n")
        if live and transition["status"] not in TERMINAL:
            out.write(f"  {transition['status']}…")
        out.flush()

    if run["status"] in TERMINAL:
        for transition in run["transitions"]:
            show(transition)
        return run
    deadline = time.monotonic() + timeout
    status, last_id = run["status"], None
    # The server ends a stream after some minutes: the next one resumes after the last event seen.
    while status not in TERMINAL and time.monotonic() < deadline:
        with closing(client.events(session, last_id)) as events:
            for event in events:
                if event is not None:
                    last_id = event["id"]
                    if event["data"]["runId"] == run_id:
                        show(event["data"])
                        status = event["data"]["status"]
                if status in TERMINAL or time.monotonic() > deadline:
                    break
    run = client.run(session, run_id)
    if run["status"] not in TERMINAL:
        out.write(("\r\033[K" if live else "") + f"  still {run['status']} after {timeout:.0f} s; stopped watching\n")
        out.flush()
    return run


def describe(run: dict[str, Any], out: IO[str] = sys.stdout) -> None:
    """The result in words: commands with their output, otherwise the result as JSON."""
    out.write(f"{run['action']} {run['status']}\n")
    if run.get("error"):
        out.write(f"error: {run['error']}\n")
    result = run.get("result") or {}
    if "results" in result:
        for command in result["results"]:
            out.write(f"$ {command['command']}  (exit {command['exitCode']}, {command['durationMs']} ms)\n")
            for stream in ("output", "error"):
                if command.get(stream):
                    out.write(command[stream].rstrip("\n") + "\n")
    elif result:
        out.write(json.dumps(result, indent=2) + "\n")
