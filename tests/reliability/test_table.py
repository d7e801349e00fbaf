"""docs/RELIABILITY.md has no constant cell: every count is counted from measured verdicts, every
fault and note is built from the scenario's parameters and measurements (no stack needed)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.reliability import __main__ as reliability
from tests.reliability.harness import COLUMNS, Row, Verdict, cells, judge, table, tally

HERE = Path(__file__).parent
SOURCES = [HERE / "scenarios.py", HERE / "harness.py", HERE / "__main__.py"]
MEASURED = COLUMNS[1:]  # all but the scenario's name, a label


def run(status: str, transitions: list[int], claims: int, error: str | None = None) -> dict[str, object]:
    return {
        "status": status,
        "seq": max(transitions),
        "error": error,
        "claims": claims,
        "transitions": [{"seq": seq} for seq in transitions],
    }


def killed(signal_name: str, verdicts: list[Verdict]) -> Row:
    """A row as job_killed builds one, from its verdicts."""
    return Row(
        "job killed mid-action",
        f"{signal_name} to the sandbox job once its {len(verdicts)} runs were seen running; restarted",
        tuple(verdicts),
        note=f"ledger lines per run {tally(v.effects for v in verdicts)}",
    )


def test_changing_the_fault_and_what_it_did_changes_every_cell_of_the_row() -> None:
    # SIGKILL: every run retaken and executed once. SIGTERM, on a job that fails runs instead of
    # finishing them: one run failed, one executed twice, one never, one not terminal.
    redelivered = killed(
        "SIGKILL",
        [judge(f"r{n}", run("succeeded", [0, 1, 2], 2), 1, "succeeded", claims=2) for n in range(3)],
    )
    failed = killed(
        "SIGTERM",
        [
            judge("a", run("failed", [0, 1, 2], 1, "killed"), 1, "succeeded", claims=1),
            judge("b", run("succeeded", [0, 1, 2], 2), 2, "succeeded", claims=1),
            judge("c", run("succeeded", [0, 1, 2], 1), 0, "succeeded", claims=1),
            judge("d", run("running", [0, 1], 1), 1, "succeeded", claims=1),
        ],
    )
    assert (redelivered.runs, redelivered.lost, redelivered.duplicated, redelivered.stuck) == (3, 0, 0, 0)
    assert (redelivered.broken, redelivered.result) == (0, "pass")
    assert (failed.runs, failed.lost, failed.duplicated, failed.stuck, failed.broken) == (4, 1, 1, 1, 2)
    assert failed.result == "FAIL"
    # A run that merely ends failed is no longer a pass: it breaks the promise to redeliver it.
    assert any("ended failed (killed), not succeeded" in problem for problem in failed.problems)
    rendered = table([redelivered, failed]).splitlines()
    assert rendered[0] == "| " + " | ".join(COLUMNS) + " |"
    first, second = ([cell.strip() for cell in line.strip("|").split("|")] for line in rendered[2:])
    for column, a, b in zip(COLUMNS, first, second, strict=True):
        if column in MEASURED:
            assert a != b, f"{column!r} is the same ({a!r}) for two different faults and outcomes"


def test_a_row_with_no_runs_fails() -> None:
    assert Row("empty", "nothing", (), note="nothing measured").result == "FAIL"


def test_verdicts_count_executions_per_run() -> None:
    once, never, twice = (Verdict(name, n, 1, True, ()) for name, n in (("once", 1), ("never", 0), ("twice", 2)))
    assert (once.lost, once.duplicated) == (False, False)
    assert (never.lost, never.duplicated) == (True, False)
    assert (twice.lost, twice.duplicated) == (False, True)
    # A refused request owes nothing: not executed is right.
    assert not Verdict("refused", 0, 0, None, ()).problems


def literals(path: Path) -> set[str]:
    return {
        str(node.value)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float)
    }


def computed(node: ast.expr) -> bool:
    """Whether an argument is built from values (an f-string with a placeholder, a call, a name...)."""
    if isinstance(node, ast.Constant):
        return False
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp):
        return computed(node.left) or computed(node.right)
    return True


def test_no_row_in_the_scenarios_is_written_as_constants() -> None:
    # The counts are not fields at all: only verdicts are handed over, and counted.
    fields = set(Row.__dataclass_fields__)
    assert fields == {"scenario", "injected", "verdicts", "note", "checks"}, fields
    calls = [
        node
        for node in ast.walk(ast.parse((HERE / "scenarios.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Row"
    ]
    assert len(calls) == len(reliability.FULL), "one Row per scenario"
    for call in calls:
        arguments = dict(zip(["scenario", "injected", "verdicts", "note", "checks"], call.args, strict=False))
        arguments |= {keyword.arg: keyword.value for keyword in call.keywords if keyword.arg}
        where = f"scenarios.py:{call.lineno}"
        for name in ("injected", "verdicts", "note"):
            assert computed(arguments[name]), f"{where}: {name} is written as a constant"


def test_the_table_in_the_docs_has_no_cell_the_source_writes_as_a_literal() -> None:
    text = (HERE.parent.parent / "docs" / "RELIABILITY.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == table([]).splitlines()[0], "docs/RELIABILITY.md was not written by this table"
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]
    assert [row[0] for row in rows] == [name for name, _ in reliability.FULL]
    written = set().union(*(literals(path) for path in SOURCES))
    for row in rows:
        for column in ("injected", "measured"):
            cell = row[COLUMNS.index(column)]
            assert cell not in written, f"{row[0]}: its {column} cell {cell!r} is a literal of the source"


def test_cells_escape_what_would_break_the_table() -> None:
    row = Row("pipes", "a | b", (Verdict("x", 1, 1, True, ()),), note="line\nbreak")
    assert cells(row)[1] == "a \\| b" and "\n" not in cells(row)[-1]
