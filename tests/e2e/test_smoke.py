"""`make smoke`'s isolation canary against the local stack, run as Cloud Build's smoke step runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.canary_probes import probes
from devstack.stack import Stack
from tests.e2e.conftest import TOKEN

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_the_canary_passes_on_the_local_stack_within_a_minute(stack: Stack) -> None:
    env = dict(os.environ) | {"VIBESDK_API_TOKEN": TOKEN}
    started = time.monotonic()
    smoke = subprocess.run(
        [sys.executable, "-m", "devstack.smoke", "--url", stack.api_url, "--project", stack.project],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - started
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    lines = smoke.stdout.splitlines()
    for probe in probes(stack.api_url, stack.project):
        line = next(line for line in lines if line.startswith(f"{probe.name} "))
        assert line.endswith("  ok"), line
    assert lines[-1].startswith("canary: all 9 probes behaved"), smoke.stdout
    assert seconds < 60, f"the smoke test took {seconds:.0f} s:\n{smoke.stdout}"
