"""createInstance from files (VibSDK's runner sends a template's files): the lockfile names the
install (npm or bun, through the egress proxy, cached by key), VibSDK's don't-touch and redacted
lists, and envVars values kept out of what commands answer."""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from functions import dependencies
from functions.actions import common
from functions.actions.common import redacted, run_in_sandbox
from functions.actions.files import listed_paths
from functions.context import Context
from functions.dependencies import InstallSpec
from functions.instances import load_instance, workspace_of
from functions.job import handle_request
from functions.lockfiles import install_for
from functions.project_commands import commands_for
from functions.sandbox import CommandResult
from tests import test_job
from tests.test_job import message_for
from vibesdk_gcp.schemas import SandboxRequest, utcnow

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
status_events = test_job.status_events  # the fixture


@pytest.fixture
def events(status_events: Any) -> Any:
    return status_events


def project(name: str, **more: str) -> list[dict[str, str]]:
    """A tiny project of tests/golden (is-number, locked), with more files."""
    files = {path.name: path.read_text() for path in sorted((GOLDEN / name).iterdir())}
    files |= {"src/index.js": "module.exports = require('is-number')(7)\n"} | more
    return [{"filePath": path, "fileContents": contents} for path, contents in files.items()]


def act(context: Context, events: Any, session_id: str, action: str, params: dict[str, Any], new: bool = False) -> Any:
    """One run, as the /runner routes queue it: no templateName on the request."""
    request = SandboxRequest.model_validate(
        {
            "sessionId": session_id,
            "runId": str(uuid.uuid4()),
            "action": action,
            "issuedAt": utcnow(),
            "owner": "alice",
            "egress": True,
            "params": params,
        }
    )
    context.store.queue_run(request, new_session=new)
    handle_request(message_for(request), context)
    return events()


def create(context: Context, events: Any, files: list[dict[str, str]], **params: Any) -> tuple[str, Any]:
    session_id = str(uuid.uuid4())
    created = act(context, events, session_id, "createInstance", {"files": files, **params}, new=True)
    assert created["status"] == "succeeded", created
    return session_id, created["result"]


def require_works(context: Context, events: Any, session_id: str) -> None:
    done = act(context, events, session_id, "executeCommands", {"commands": ["node -e \"require('is-number')\""]})
    assert done["status"] == "succeeded", done


# --- the lockfile's install


def test_the_lockfile_names_the_install() -> None:
    npm, bun = install_for(["package.json", "package-lock.json"]), install_for(["bun.lock", "package.json"])
    assert npm and npm.command.startswith("npm ci") and npm.inputs == ("package-lock.json", "package.json")
    assert bun and bun.command == "bun install --frozen-lockfile" and bun.inputs == ("bun.lock", "package.json")
    binary = install_for(["bun.lockb"])
    assert binary and binary.command == bun.command and binary.inputs[0] == "bun.lockb"
    assert install_for(["package-lock.json", "bun.lock"]) == bun  # VibSDK's runner installs with bun
    assert install_for(["package.json", "src/package-lock.json"]) is None  # the project's top only
    assert install_for([]) is None


def test_the_cache_key_covers_the_tools_version(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = install_for(["bun.lock"])
    assert spec
    inputs = {"bun.lock": b"{}", "package.json": b"{}"}
    assert dependencies.tool_version(spec.command) == "bun-1.4.4"  # as the sandbox's PATH finds it
    key = spec.key(inputs)
    monkeypatch.setattr(dependencies, "tool_version", lambda command: "bun-9.9.9")
    assert spec.key(inputs) != key
    assert InstallSpec.of(spec.as_entry()) == spec  # as an instance records it


def test_bun_is_pinned_alike_in_the_image_and_the_local_setup() -> None:
    image = re.search(r"^ARG BUN_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    local = re.search(r"^bun_version=(\S+)$", (ROOT / "devstack/install-system-packages.sh").read_text(), re.M)
    assert image and local and image.group(1) == local.group(1) == "1.4.4"


def test_an_instance_from_files_with_a_package_lock_installs_with_npm(context: Context, events: Any) -> None:
    files = project("project-npm")
    hook = "https://agent.example/webhook?run=1"
    first, result = create(context, events, files, initCommand="touch init-ran", webhookUrl=hook)
    assert result["dependencies"]["source"] == "install" and result["templateName"] == "files"
    workspace = workspace_of(context, first).path
    assert (workspace / "node_modules" / "is-number" / "package.json").is_file()
    assert not (workspace / "init-ran").exists()  # recorded, not run: it starts a dev server
    instance = load_instance(context, first)
    assert instance and instance.initCommand == "touch init-ran" and instance.webhookUrl == hook
    assert instance.source == "files" and instance.install and str(instance.install["command"]).startswith("npm ci")
    require_works(context, events, first)

    second, result = create(context, events, files, templateName="tiny")
    assert result["dependencies"]["source"] == "instance" and result["templateName"] == "tiny"
    require_works(context, events, second)


def test_an_instance_from_files_with_a_bun_lock_installs_with_bun(
    context: Context, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []

    def observed(ctx: Context, command: str, *args: Any, **kwargs: Any) -> CommandResult:
        ran.append(command)
        return run_in_sandbox(ctx, command, *args, **kwargs)

    monkeypatch.setattr(common, "run_in_sandbox", observed)
    files = project("project-bun")
    first, result = create(context, events, files)
    assert result["dependencies"]["source"] == "install", result
    assert result["dependencies"]["scripts"] == "on"  # a key with egress
    assert (workspace_of(context, first).path / "node_modules" / "is-number" / "index.js").is_file()
    # bun's cache in the install's own /tmp, never one shared between sessions.
    assert ran == ['export BUN_INSTALL_CACHE_DIR="$TMPDIR/bun-install-cache"; bun install --frozen-lockfile']
    require_works(context, events, first)

    second, result = create(context, events, files)
    assert result["dependencies"] == result["dependencies"] | {"source": "instance"}
    require_works(context, events, second)


def test_files_without_a_lockfile_install_nothing(context: Context, events: Any) -> None:
    files = [{"filePath": "./index.html", "fileContents": "<p>hi</p>\n"}, {"filePath": "a/b.txt", "fileContents": "b"}]
    session_id, result = create(context, events, files)
    assert result["dependencies"] is None
    assert [node["path"] for node in result["fileTree"]["children"]] == ["a", "index.html"]
    assert not (workspace_of(context, session_id).path / "node_modules").exists()
    listed = act(context, events, session_id, "getFiles", {})
    assert sorted(f["filePath"] for f in listed["result"]["files"]) == ["a/b.txt", "index.html"]


def test_files_that_leave_the_workspace_or_name_nothing_fail(context: Context, events: Any) -> None:
    escaping = act(
        context,
        events,
        str(uuid.uuid4()),
        "createInstance",
        {"files": [{"filePath": "../outside", "fileContents": "x"}]},
        new=True,
    )
    assert escaping["status"] == "failed" and "outside the workspace" in escaping["error"]
    nothing = act(context, events, str(uuid.uuid4()), "createInstance", {}, new=True)
    assert nothing["status"] == "failed" and "needs templateName or files" in nothing["error"]


# --- VibSDK's lists


def test_dont_touch_files_are_not_written_and_redacted_files_not_shown(
    context: Context, events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    files = [
        {"filePath": ".donttouch_files.json", "fileContents": json.dumps(["locked.txt", "./config/keep.json"])},
        {"filePath": ".redacted_files.json", "fileContents": json.dumps(["secret.txt"])},
        {"filePath": "locked.txt", "fileContents": "as given\n"},
        {"filePath": "config/keep.json", "fileContents": "{}"},
        {"filePath": "secret.txt", "fileContents": "hunter2\n"},
    ]
    session_id, _ = create(context, events, files)
    changes = [
        {"filePath": "locked.txt", "fileContents": "changed\n"},
        {"filePath": "config/keep.json", "fileContents": "[]"},
        {"filePath": "free.txt", "fileContents": "new\n"},
    ]
    written = act(context, events, session_id, "writeFiles", {"files": changes})
    assert written["status"] == "succeeded", written
    forbidden = {"success": False, "error": "File is forbidden to be modified"}
    assert written["result"]["files"] == [
        {"file": "locked.txt"} | forbidden,
        {"file": "config/keep.json"} | forbidden,
        {"file": "free.txt", "success": True},
    ]
    got = act(context, events, session_id, "getFiles", {})
    contents = {f["filePath"]: f["fileContents"] for f in got["result"]["files"]}
    assert contents["locked.txt"] == "as given\n" and contents["config/keep.json"] == "{}"
    assert contents["free.txt"] == "new\n" and contents["secret.txt"] == "[REDACTED]"
    named = act(context, events, session_id, "getFiles", {"filePaths": ["./secret.txt"]})
    assert named["result"]["files"] == [{"filePath": "./secret.txt", "fileContents": "[REDACTED]"}]

    # A malformed list counts as empty, and the logs say so.
    broken = [{"filePath": ".redacted_files.json", "fileContents": "{oops"}]
    assert act(context, events, session_id, "writeFiles", {"files": broken})["status"] == "succeeded"
    with caplog.at_level(logging.WARNING, logger="functions.actions.files"):
        named = act(context, events, session_id, "getFiles", {"filePaths": ["secret.txt"]})
    assert named["result"]["files"] == [{"filePath": "secret.txt", "fileContents": "hunter2\n"}]
    assert ".redacted_files.json is not a JSON array" in caplog.text


def test_a_list_is_never_read_through_a_link(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(["a"]))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / ".redacted_files.json").symlink_to(elsewhere)
    assert listed_paths(workspace, ".redacted_files.json") == set()
    (workspace / ".redacted_files.json").unlink()
    (workspace / ".redacted_files.json").write_text(json.dumps(["./b", "c/d", 3]))
    assert listed_paths(workspace, ".redacted_files.json") == set()  # not all paths
    (workspace / ".redacted_files.json").write_text(json.dumps(["./b", "c/d"]))
    assert listed_paths(workspace, ".redacted_files.json") == {"b", "c/d"}


# --- envVars


def test_env_values_are_redacted_in_a_commands_outputs() -> None:
    outcome = CommandResult("env", 0, b"key=sk-123456 short=abc part=sk-12\n", b"sk-123456sk-1234", 0.1)
    shown = redacted(outcome, {"KEY": "sk-123456", "SHORT": "abc", "PART": "sk-1234"})
    assert shown.stdout == b"key=[REDACTED] short=abc part=sk-12\n"  # shorter than 4: ordinary words
    assert shown.stderr == b"[REDACTED][REDACTED]"  # the longest first
    assert redacted(outcome, None) is outcome


def test_env_values_are_redacted_from_what_clients_read(context: Context, events: Any) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    env = {"API_KEY": secret, "MODE": "dev"}
    session_id, _ = create(context, events, project("project-npm"), envVars=env)
    done = act(
        context,
        events,
        session_id,
        "executeCommands",
        {"commands": ['echo "key=$API_KEY mode=$MODE"; echo "$API_KEY" >&2']},
    )
    assert done["status"] == "succeeded", done
    (entry,) = done["result"]["results"]
    assert entry["output"] == "key=[REDACTED] mode=dev\n" and entry["error"] == "[REDACTED]\n"
    logs = act(context, events, session_id, "getLogs", {})
    assert logs["status"] == "succeeded" and secret not in json.dumps(logs)
    assert "key=[REDACTED]" in logs["result"]["logs"]["stdout"]
    failed = act(context, events, session_id, "executeCommands", {"commands": ['echo "$API_KEY" >&2; exit 3']})
    assert failed["status"] == "failed" and secret not in json.dumps(failed) and "[REDACTED]" in failed["error"]


# --- the project's own commands


def test_a_projects_scripts_and_tsconfig_name_its_commands(tmp_path: Path) -> None:
    package = {"scripts": {"lint": "eslint -f json .", "build": "vite build"}, "devDependencies": {"typescript": "5"}}
    (tmp_path / "package.json").write_text(json.dumps(package))
    assert commands_for(tmp_path, "bun") == {"lint": "bun run lint", "build": "bun run build", "outputDir": "dist"}
    (tmp_path / "tsconfig.json").write_text("{}")
    assert commands_for(tmp_path, "npm") == {
        "lint": "npm run lint --silent",
        "build": "npm run build --silent",
        "outputDir": "dist",
        "typecheck": "./node_modules/.bin/tsc -b --noEmit --pretty false",
    }
    package["scripts"]["typecheck"] = "tsc --noEmit"  # the project's own, first
    (tmp_path / "package.json").write_text(json.dumps(package))
    assert commands_for(tmp_path, "bun")["typecheck"] == "bun run typecheck"
    (tmp_path / "package.json").write_text("{not json")
    assert commands_for(tmp_path, "npm") == {}  # and no typecheck: TypeScript is not among its packages


def test_an_instance_from_files_builds_with_its_build_script_and_publishes_its_output(
    context: Context, events: Any
) -> None:
    build = "mkdir -p dist && echo '<p>built</p>' > dist/index.html && echo SECRET=1 > dist/.env"
    files = [
        {"filePath": "package.json", "fileContents": json.dumps({"scripts": {"build": build}})},
        {"filePath": "index.html", "fileContents": "<p>source</p>"},
    ]
    session_id, _ = create(context, events, files)
    deployed = act(context, events, session_id, "deployInstance", {})
    assert deployed["status"] == "succeeded", deployed
    assert deployed["result"]["build"]["command"] == "npm run build --silent"
    assert deployed["result"]["files"] == 1  # dist/index.html: never a hidden file such as .env


def test_a_project_without_a_build_publishes_its_files_but_no_hidden_file_nor_packages(
    context: Context, events: Any
) -> None:
    files = [
        {"filePath": "index.html", "fileContents": "<p>hi</p>"},
        {"filePath": ".env", "fileContents": "TOKEN=secret"},
        {"filePath": ".well-known/security.txt", "fileContents": "Contact: a@example.test"},
        {"filePath": "node_modules/x/index.js", "fileContents": "module.exports = 1"},
    ]
    session_id, _ = create(context, events, files)
    deployed = act(context, events, session_id, "deployInstance", {})
    assert deployed["status"] == "succeeded", deployed
    assert deployed["result"]["files"] == 2  # index.html and .well-known/security.txt
