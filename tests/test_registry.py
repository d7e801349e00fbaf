"""One registry of actions (vibesdk_gcp/registry.py): everything else derives from it."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from control_plane.models import QueueAction
from functions.actions import handler_of
from vibesdk_gcp.params import ExecuteCommandsParams, NoParams
from vibesdk_gcp.registry import ACTIONS
from vibesdk_gcp.schemas import SandboxRequest, utcnow

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "vibesdk_gcp" / "registry.py"


def _listings(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Collections written in code (list, tuple, set, dict keys, Literal[...]) holding 3+ action names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [key for key in node.keys if key is not None]
        else:
            continue
        names = [item.value for item in items if isinstance(item, ast.Constant) and item.value in ACTIONS]
        if len(names) >= 3:
            found.append((node.lineno, names))
    return found


def test_no_module_but_the_registry_lists_actions() -> None:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True)
    offenders = {}
    for name in tracked.stdout.split():
        path = ROOT / name
        if path == REGISTRY or not path.exists():
            continue
        listings = _listings(ast.parse(path.read_text(), filename=name))
        if listings:
            offenders[name] = listings
    assert offenders == {}, "actions listed outside vibesdk_gcp/registry.py: derive them from it"


def test_the_listing_check_sees_a_listing() -> None:
    assert _listings(ast.parse('NAMES = ("writeFiles", "getFiles", "getLogs")'))
    assert not _listings(ast.parse('run("writeFiles"); run("getFiles"); run("getLogs")'))


def test_every_action_has_a_handler_the_job_can_call() -> None:
    for spec in ACTIONS.values():
        assert callable(handler_of(spec)), spec.name


def test_a_request_is_parsed_once_with_its_actions_params_model() -> None:
    request = SandboxRequest(
        sessionId="s", runId="r", action="executeCommands", params={"commands": ["ls"]}, issuedAt=utcnow(), owner="o"
    )
    assert isinstance(request.params, ExecuteCommandsParams)
    again = SandboxRequest.model_validate_json(request.model_dump_json())
    assert again.params == request.params
    # On the wire, params read as they were sent: no defaults the caller did not set.
    assert '"params":{"commands":["ls"]}' in request.model_dump_json()
    body = QueueAction.model_validate({"action": "deployInstance"})
    assert isinstance(body.params, NoParams)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"action": "executeCommands", "params": {}}, "params.commands"),
        ({"action": "writeFiles", "params": {"files": [{"filePath": ""}]}}, "params.files.0.filePath"),
        ({"action": "getLogs", "params": {"nope": 1}}, "params.nope"),
        ({"action": "noSuchAction"}, "action"),
    ],
)
def test_a_bad_body_is_refused_naming_its_field(body: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as refused:
        QueueAction.model_validate(body)
    assert ".".join(str(part) for part in refused.value.errors()[0]["loc"]) == where
