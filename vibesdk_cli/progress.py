"""Waiting for a run to end, or watching it: each transition as it happens, its time since the start, the result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from vibesdk_cli.client import Client

TERMINAL = ("succeeded", "failed")
POLL_SECONDS = 0.5


def _at(transition: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(transition["at"])


def wait_for_run(
    fetch: Callable[[], dict[str, Any]],
    timeout: float,
    every: float = POLL_SECONDS,
    seen: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Fetch the run every `every` s until it has ended or `timeout` s have passed.

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


def watch(
    client: Client, session: str, run_id: str, out: IO[str] = sys.stdout, timeout: float = 1800
) -> dict[str, Any]:
    """Print transitions until the run ends; returns the run."""
    shown = 0
    started = time.monotonic()
    live = out.isatty()

    def show(run: dict[str, Any]) -> None:
        nonlocal shown
        transitions = run["transitions"]
        if live and shown:
            out.write("\r\033[K")
        for transition in transitions[shown:]:
            since = (_at(transition) - _at(transitions[0])).total_seconds()
            out.write(f"  +{since:6.2f} s  {transition['status']}\n")
        shown = len(transitions)
        if live and run["status"] not in TERMINAL:
            out.write(f"  {run['status']}… {time.monotonic() - started:.1f} s")
        out.flush()

    run = wait_for_run(lambda: client.run(session, run_id), timeout, seen=show)
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
