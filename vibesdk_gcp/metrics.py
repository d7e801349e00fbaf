"""Counts of the work a unit does (Firestore reads and writes, publishes, deliveries).

Off unless VIBESDK_METRICS_DIR is set; then each process writes its counts to
`<dir>/<unit>-<pid>.json` every half second, for the benchmark to add up.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path

FLUSH_SECONDS = 0.5


class WorkCounter:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._started = False

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount
        if not self._started:
            self._start()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        directory = os.environ.get("VIBESDK_METRICS_DIR")
        if directory:
            threading.Thread(target=self._flush_forever, args=(Path(directory),), daemon=True).start()

    def _flush_forever(self, directory: Path) -> None:
        unit = os.environ.get("VIBESDK_UNIT", "unit")
        target = directory / f"{unit}-{os.getpid()}.json"
        written: dict[str, int] = {}
        event = threading.Event()
        while not event.wait(FLUSH_SECONDS):
            current = self.snapshot()
            if current != written:
                partial = target.with_suffix(".part")
                partial.write_text(json.dumps(current))
                partial.replace(target)
                written = current


work = WorkCounter()
