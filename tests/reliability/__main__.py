"""`make reliability`: every scenario at full size; prints the table and writes docs/RELIABILITY.md."""

from __future__ import annotations

import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from devstack.stack import PROJECT_ROOT
from tests.reliability import scenarios
from tests.reliability.harness import Harness, Row, start

FULL = [
    lambda h: scenarios.duplicates(h, 10),
    lambda h: scenarios.reordering(h, 50),
    lambda h: scenarios.job_killed(h, 5),
    lambda h: scenarios.lease_expired(h, 10),
    lambda h: scenarios.recorder_down(h, 20, 30),
    lambda h: scenarios.services_unavailable(h, 3),
    lambda h: scenarios.poison(h, 12),
    lambda h: scenarios.graceful_shutdown(h, 3),
    lambda h: scenarios.load(h, 1000, 50),
    lambda h: scenarios.fuzz(h, 100),
]


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | injected | runs | lost | duplicated | stuck | result | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.scenario} | {r.injected} | {r.runs} | {r.lost} | {r.duplicated} | {r.stuck} | {r.result} | {r.note} |"
        for r in rows
    ]
    return "\n".join(lines)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally stops the stack
    stack = start(Path(tempfile.mkdtemp(prefix="vibesdk-reliability-")))
    harness = Harness(stack)
    rows = []
    try:
        for scenario in FULL:
            rows.append(scenario(harness))
            print(rows[-1], flush=True)
    finally:
        harness.close()
        stack.stop()
    text = table(rows)
    print(text)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    (PROJECT_ROOT / "docs" / "RELIABILITY.md").write_text(
        "# Reliability\n\nMeasured " + when + " by `make reliability` against the real emulators and processes "
        "(`tests/reliability/scenarios.py`; `make test` runs the same scenarios small).\n\n"
        "Lost: accepted runs with no true terminal state or a succeeded run without its effect. Duplicated: an "
        "action's effect applied twice. Stuck: not terminal when the scenario ended.\n\n" + text + "\n"
    )
    return 0 if all(row.result == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
