"""A goal: what it is judged on (the statistic), the figure, whether it is met, and the other statistics.

A verdict can hang on the statistic (a median met where the mean is not): each goal names the one it
is judged on and carries the others beside it, each with its own verdict, so the report shows
where they disagree.
"""

from __future__ import annotations

from typing import Any


def other(statistic: str, value: float | None, bound: float, at_most: bool = True) -> dict[str, Any]:
    return {"statistic": statistic, "value": value, "met": _met(value, bound, at_most)}


def goal(
    name: str,
    judged_on: str,
    value: float | None,
    bound: float,
    at_most: bool = True,
    others: list[dict[str, Any]] | None = None,
    invalid: str = "",
) -> dict[str, Any]:
    """`invalid` says why the measurement does not test the goal (then it is not met, whatever the figure)."""
    return {
        "goal": name,
        "judged_on": judged_on,
        "value": value,
        "bound": bound,
        "met": not invalid and _met(value, bound, at_most),
        "others": others or [],
        "invalid": invalid,
    }


def _met(value: float | None, bound: float, at_most: bool) -> bool:
    if value is None:
        return False
    return value <= bound if at_most else value >= bound
