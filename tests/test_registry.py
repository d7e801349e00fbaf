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
from vibesdk_gcp.runs import RunDoc
from vibesdk_gcp.runs.queries import readable
from vibesdk_gcp.schemas import SandboxRequest, StatusEvent, utcnow

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


def test_a_newer_jobs_session_changes_are_applied_as_far_as_this_release_knows_them() -> None:
    """A field a later release adds is ignored, never the whole status event refused (and its run stranded)."""
    event = StatusEvent.model_validate(
        {
            "eventId": "e",
            "sessionId": "s",
            "runId": "r",
            "seq": 2,
            "status": "succeeded",
            "time": "2026-12-01T00:00:00Z",
            "session": {"instanceId": "i-1", "agentState": {"later": True}},
        }
    )
    assert event.session is not None and event.session.fields() == {"instanceId": "i-1"}


def test_documents_of_a_newer_release_still_read() -> None:
    """A run of an action this release does not know is still a run: listed, swept, recorded."""
    now = utcnow()
    transition = {"seq": 0, "status": "queued", "at": now}
    document = {"runId": "r", "sessionId": "s", "action": "aLaterAction", "paramsDigest": "sha256:0"}
    document |= {"status": "queued", "seq": 0, "transitions": [transition], "createdAt": now, "updatedAt": now}
    assert RunDoc.model_validate(document).action == "aLaterAction"
    # One malformed document is left out of a listing, not the whole listing failed.
    assert readable(RunDoc, [document, {"runId": "broken"}]) == [RunDoc.model_validate(document)]


def test_a_message_reads_params_as_laxly_as_the_previous_release_let_them_through() -> None:
    """The API is strict now; a message the previous release's control plane queued must still run."""
    fields = {"sessionId": "s", "runId": "r", "action": "executeCommands", "issuedAt": utcnow(), "owner": "o"}
    request = SandboxRequest(**fields, params={"commands": ["ls"], "timeout": "5"})
    assert isinstance(request.params, ExecuteCommandsParams) and request.params.timeout == 5
    with pytest.raises(ValidationError):
        QueueAction.model_validate({"action": "executeCommands", "params": {"commands": ["ls"], "timeout": "5"}})
