from __future__ import annotations

import pytest

from vibesdk_gcp.state import NEXT, decide, reachable


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        ("queued", "running", True),
        ("queued", "succeeded", True),
        ("queued", "failed", True),
        ("running", "succeeded", True),
        ("running", "queued", False),
        ("succeeded", "failed", False),
        ("failed", "running", False),
    ],
)
def test_reachable(current: str, target: str, expected: bool) -> None:
    assert reachable(current, target) is expected


def test_terminal_states_have_no_successor() -> None:
    assert NEXT["succeeded"] == NEXT["failed"] == frozenset()


def test_in_order_event_advances() -> None:
    decision = decide("queued", 0, {0}, "running", 1)
    assert decision.advance and decision.record


def test_duplicate_changes_nothing() -> None:
    decision = decide("running", 1, {0, 1}, "running", 1)
    assert not decision.advance and not decision.record
    assert decision.reason == "duplicate"


def test_terminal_event_before_running_advances() -> None:
    decision = decide("queued", 0, {0}, "succeeded", 2)
    assert decision.advance


def test_late_running_is_recorded_without_moving_back() -> None:
    decision = decide("succeeded", 2, {0, 2}, "running", 1)
    assert decision.record and not decision.advance


def test_terminal_never_changes() -> None:
    decision = decide("succeeded", 2, {0, 1, 2}, "failed", 3)
    assert not decision.advance and not decision.record


def test_late_terminal_that_disagrees_is_refused() -> None:
    decision = decide("failed", 2, {0, 2}, "succeeded", 1)
    assert not decision.record
