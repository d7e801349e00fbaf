"""The reliability scenarios at a small size; `make reliability` runs them full-size."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.reliability import scenarios
from tests.reliability.harness import Harness, Row

pytestmark = pytest.mark.e2e

SMALL: dict[str, Callable[[Harness], Row]] = {
    "duplicates": lambda h: scenarios.duplicates(h, 3),
    "reordering": lambda h: scenarios.reordering(h, 5),
    "job_killed": lambda h: scenarios.job_killed(h, 2),
    "lease_expired": lambda h: scenarios.lease_expired(h, 2),
    "recorder_down": lambda h: scenarios.recorder_down(h, 3, 10),
    "services_unavailable": lambda h: scenarios.services_unavailable(h, 1),
    "poison": lambda h: scenarios.poison(h, 3),
    "graceful_shutdown": lambda h: scenarios.graceful_shutdown(h, 1),
    "load": lambda h: scenarios.load(h, 100, 20),
    "fuzz": lambda h: scenarios.fuzz(h, 20),
}


@pytest.mark.parametrize("scenario", list(SMALL))
def test_scenario(harness: Harness, scenario: str) -> None:
    row = SMALL[scenario](harness)
    print(row)
    assert (row.lost, row.duplicated, row.stuck) == (0, 0, 0), row
