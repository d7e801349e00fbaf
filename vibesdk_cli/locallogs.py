"""One run's lines from a local `make dev` stack, from every unit, in time order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_DIR = Path(__file__).resolve().parent.parent / ".devstack" / "logs"


def run_lines(run_id: str, log_dir: Path = DEFAULT_DIR) -> list[dict[str, Any]]:
    """Every JSON line about the run, or in its trace (found through the run's own lines)."""
    entries = []
    for path in sorted(log_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    traces = {entry["traceId"] for entry in entries if entry.get("runId") == run_id and entry.get("traceId")}
    chosen = [entry for entry in entries if entry.get("runId") == run_id or entry.get("traceId") in traces]
    return sorted(chosen, key=lambda entry: str(entry.get("time")))
