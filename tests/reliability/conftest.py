"""One stack with short leases for the reliability and delivery tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.harness import Harness, start


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    stack = start(Path(tmp_path_factory.mktemp("reliability-logs")))
    harness = Harness(stack)
    yield harness
    harness.close()
    stack.stop()
