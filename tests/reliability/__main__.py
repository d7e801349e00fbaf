"""`make reliability`: every scenario at full size; prints the table and writes docs/RELIABILITY.md."""

from __future__ import annotations

import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from devstack.stack import PROJECT_ROOT
from tests.reliability import scenarios
from tests.reliability.harness import COLUMNS, Harness, Row, start, table

FULL: list[tuple[str, Callable[[Harness], Row]]] = [
    ("duplicates", lambda h: scenarios.duplicates(h, 10)),
    ("reordering", lambda h: scenarios.reordering(h, 50)),
    ("job killed mid-action", lambda h: scenarios.job_killed(h, 5)),
    ("lease expired", lambda h: scenarios.lease_expired(h, 10)),
    ("status recorder down", lambda h: scenarios.recorder_down(h, 20, 30)),
    ("Pub/Sub or Firestore unreachable", lambda h: scenarios.services_unavailable(h, 3)),
    ("poison messages", lambda h: scenarios.poison(h, 12)),
    ("graceful shutdown", lambda h: scenarios.graceful_shutdown(h, 3)),
    ("load", lambda h: scenarios.load(h, 1000, 50)),
    ("API fuzzing", lambda h: scenarios.fuzz(h, 100)),
]

DOC = PROJECT_ROOT / "docs" / "RELIABILITY.md"

LEGEND = f"""\
Every figure below was measured in the run that wrote it; nothing in a row is written by hand.
Each scenario judges every one of its runs (or messages, or requests) on what the run left behind:
the lines its command appended to a ledger in its workspace (one per execution, read back with
getFiles), its record in Firestore (status, error, transitions, claims), the sandbox job's and the
status recorder's log lines naming it, the dead letters carrying it. The injected fault is stated
from the scenario's parameters and what was measured of it; a fault that hits runs at work is
injected only once those runs are seen running.

- **{COLUMNS[2]}**: the runs (messages, requests) the scenario judged.
- **{COLUMNS[3]}**: its effect seen fewer times than its promise owes (an action never executed, a
  poison message never dead-lettered, a stale run the sweeper never ended).
- **{COLUMNS[4]}**: its effect seen twice or more (ledger lines, executions, dead letters, endings).
- **{COLUMNS[5]}**: not terminal within the scenario's own bound (tests/reliability/harness.py
  `patience`: the scenario's actions one after another plus its redeliveries, not a fixed time).
- **{COLUMNS[6]}**: terminal, but not as the scenario promises (the wrong status or reason,
  transitions other than stated, redelivered when it must not be or not when it must), plus what
  the scenario itself found wrong (the fault hit no run, a 5xx).
- **{COLUMNS[8]}**: what the run measured, and, on failure, the first problems found.
"""


def crashed(name: str, error: BaseException) -> Row:
    return Row(name, "(the scenario did not finish)", (), note=f"crashed: {error!r}"[:500], checks=(repr(error),))


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally stops the stack
    stack = start(Path(tempfile.mkdtemp(prefix="vibesdk-reliability-")))
    harness = Harness(stack)
    rows = []
    try:
        for name, scenario in FULL:
            try:
                rows.append(scenario(harness))
            except Exception as error:  # a crash is a failed row, and the others still run
                traceback.print_exc()
                rows.append(crashed(name, error))
            print(rows[-1], flush=True)
    finally:
        harness.close()
        stack.stop()
    text = table(rows)
    print(text)
    when = datetime.now(UTC).isoformat(timespec="seconds")
    DOC.write_text(
        "# Reliability\n\nMeasured " + when + " by `make reliability` against the real emulators and processes "
        "(`tests/reliability/scenarios.py`; `make test` runs the same scenarios small).\n\n"
        + LEGEND
        + "\n"
        + text
        + "\n"
    )
    return 0 if all(row.result == "pass" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
