"""The OpenAPI document describes exactly what the API accepts and answers: schemathesis, every check."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devstack.stack import Stack
from tests.e2e.conftest import TOKEN

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "schemathesis"
# Enough cases per operation to meet every kind of body, few enough to finish in well under 2 minutes.
EXAMPLES = 8


def test_the_api_conforms_to_its_openapi_document(stack: Stack) -> None:
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{stack.api_url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "1",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    print(result.stdout)  # its summary (cases, warnings), shown by `pytest -s`
    assert result.returncode == 0, result.stdout + result.stderr
