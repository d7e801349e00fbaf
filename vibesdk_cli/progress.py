"""Watching a run: each transition as it happens, the time since the start, then the result."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import IO, Any

from vibesdk_cli.client import Client

TERMINAL = ("succeeded", "failed")
POLL_SECONDS = 0.5


def _at(transition: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(transition["at"])


def watch(
    client: Client, session: str, run_id: str, out: IO[str] = sys.stdout, timeout: float = 1800
) -> dict[str, Any]:
    """Print transitions until the run ends; returns the run."""
    shown = 0
    started = time.monotonic()
    live = out.isatty()
    while True:
        run = client.run(session, run_id)
        transitions = run["transitions"]
        if live and shown:
            out.write("\r\033[K")
        for transition in transitions[shown:]:
            since = (_at(transition) - _at(transitions[0])).total_seconds()
            out.write(f"  +{since:6.2f} s  {transition['status']}\n")
        shown = len(transitions)
        if run["status"] in TERMINAL:
            out.flush()
            return run
        if time.monotonic() - started > timeout:
            out.write(f"  still {run['status']} after {timeout:.0f} s; stopped watching\n")
            return run
        if live:
            out.write(f"  {run['status']}… {time.monotonic() - started:.1f} s")
        out.flush()
        time.sleep(POLL_SECONDS)


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
