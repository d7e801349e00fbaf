"""`make smoke`'s isolation canary against the local stack, run as Cloud Build's smoke step runs it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.canary import run_canary
from devstack.canary_probes import NOT_REACHED, Probe, fetches, probes
from devstack.stack import Stack
from tests.e2e.conftest import TOKEN
from vibesdk_cli.client import Client
from vibesdk_cli.progress import until_ended

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_every_probe_behaves_on_the_local_stack_within_a_minute(stack: Stack) -> None:
    env = dict(os.environ) | {"VIBESDK_API_TOKEN": TOKEN}
    smoke = subprocess.run(
        [sys.executable, "-m", "devstack.smoke", "--url", stack.api_url, "--project", stack.project],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    lines = smoke.stdout.splitlines()
    for probe in probes(stack.api_url, stack.project):
        line = next(line for line in lines if line.startswith(f"{probe.name} "))
        assert line.endswith("  ok"), line
    # The canary's own time: the session's first createInstance may fill the dependency cache first.
    summary = re.fullmatch(r"canary: all 9 probes behaved in ([0-9.]+) s", lines[-1])
    assert summary and float(summary[1]) < 60, smoke.stdout


def test_a_probe_that_gets_through_is_named_from_its_real_output(stack: Stack) -> None:
    """The probes' fetch reports a target that answers: npm's registry, allow-listed, taken for a
    host that must be refused. Without this, every refusal could be a fetch that never works."""
    wrong = Probe(
        "registry-as-if-forbidden",
        "not reached (a wrong expectation)",
        (fetches(("https://registry.npmjs.org/is-number",)),),
        refused=True,
        proof=(NOT_REACHED,),
        network=True,
    )
    client = Client(stack.api_url, TOKEN)
    queued = client.create("static-site", "canary-wrong", {})
    assert until_ended(client, queued["sessionId"], queued["runId"], 120)["status"] == "succeeded"
    out = io.StringIO()
    failed = run_canary(client, queued["sessionId"], (wrong,), out, timeout=60)
    client.close()
    line, summary = out.getvalue().splitlines()
    assert failed == ["registry-as-if-forbidden"]
    assert "observed: exit 0: ESCAPED: python proxy registry.npmjs.org answered 200" in line and line.endswith("FAILED")
    assert summary == "canary FAILED: registry-as-if-forbidden (1 of 1 did not behave)"
