"""The machine's conditions while the bench ran: load average, and the CPU that work outside the bench used.

Every few seconds: the 1-minute load average, the machine's busy CPU time (/proc/stat) and the CPU
the bench's own process tree has used (itself, the stack, the commands they ran and reaped). Busy
time the bench's tree does not account for is other work on the machine: on a shared machine, what
the figures were measured beside. Samples are labelled with the bench's phase at the time.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

SAMPLE_SECONDS = 5.0
# Other work on the machine, in cores on a phase's mean, past which the report calls its figures noisy.
NOISY_OTHER_CORES = 0.25
TICKS = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICKS  # user .. steal; guest time is already in user


def tree_seconds(pid: int) -> float:
    """CPU of the process tree: each member's own, and its reaped children's."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total / TICKS


class Conditions:
    def __init__(self) -> None:
        self.current = "start"
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def phase(self, name: str) -> None:
        self.current = name

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = (time.monotonic(), _busy_seconds(), tree_seconds(os.getpid()))
        while not self._stop.wait(SAMPLE_SECONDS):
            now = (time.monotonic(), _busy_seconds(), tree_seconds(os.getpid()))
            elapsed = now[0] - last[0]
            busy, own = (now[1] - last[1]) / elapsed, (now[2] - last[2]) / elapsed
            self.samples.append(
                {
                    "phase": self.current,
                    "seconds": elapsed,
                    "load_1m": os.getloadavg()[0],
                    "busy_cores": busy,
                    "bench_cores": own,
                    "other_cores": max(0.0, busy - own),
                }
            )
            last = now

    def summary(self) -> dict[str, Any]:
        """Over the whole run and per phase: load average (mean, max) and cores used outside the bench."""

        def summed(samples: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "seconds": round(sum(s["seconds"] for s in samples)),
                "load_1m_mean": round(statistics.mean(s["load_1m"] for s in samples), 2),
                "load_1m_max": round(max(s["load_1m"] for s in samples), 2),
                "other_cores_mean": round(statistics.mean(s["other_cores"] for s in samples), 2),
                "other_cores_max": round(max(s["other_cores"] for s in samples), 2),
                "bench_cores_mean": round(statistics.mean(s["bench_cores"] for s in samples), 2),
            }

        if not self.samples:
            return {"sample_seconds": SAMPLE_SECONDS, "whole": None, "phases": {}}
        phases: dict[str, list[dict[str, Any]]] = {}
        for sample in self.samples:
            phases.setdefault(sample["phase"], []).append(sample)
        return {
            "sample_seconds": SAMPLE_SECONDS,
            "noisy_other_cores": NOISY_OTHER_CORES,
            "whole": summed(self.samples),
            "phases": {name: summed(samples) for name, samples in phases.items()},
        }
