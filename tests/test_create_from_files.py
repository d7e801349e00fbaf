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
from pydantic import ValidationError

from functions import dependencies
from functions.actions import common
from functions.actions.common import redacted, run_in_sandbox
from functions.actions.files import listed_paths
from functions.context import Context
from functions.dependencies import InstallSpec
from functions.instances import load_instance, workspace_of
from functions.job import handle_request
from functions.lockfiles import install_for, script_runner
from functions.project_commands import commands_for
from functions.sandbox import CommandResult, Limits
from tests import test_job
from tests.test_job import message_for
from vibesdk_gcp.errors import first_error
from vibesdk_gcp.params import CreateInstanceParams
from vibesdk_gcp.schemas import SandboxRequest, utcnow

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
status_events = test_job.status_events  # the fixture


@pytest.fixture
def events(status_events: Any) -> Any:
    return status_events


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command the actions run in the sandbox, in order."""
    commands: list[str] = []

    def observed(ctx: Context, command: str, *args: Any, **kwargs: Any) -> CommandResult:
        commands.append(command)
        return run_in_sandbox(ctx, command, *args, **kwargs)

    monkeypatch.setattr(common, "run_in_sandbox", observed)
    return commands


def project(name: str, **more: str) -> list[dict[str, str]]:
    """A tiny project of tests/golden (is-number, locked), with more files."""
    files = {path.name: path.read_text() for path in sorted((GOLDEN / name).iterdir())}
    files |= {"src/index.js": "module.exports = require('is-number')(7)\n"} | more
    return [{"filePath": path, "fileContents": contents} for path, contents in files.items()]


def act(
    context: Context,
    events: Any,
    session_id: str,
    action: str,
    params: dict[str, Any],
    new: bool = False,
    egress: bool = True,
) -> Any:
    """One run, as the /runner routes queue it: no templateName on the request."""
    request = SandboxRequest.model_validate(
        {
            "sessionId": session_id,
            "runId": str(uuid.uuid4()),
            "action": action,
            "issuedAt": utcnow(),
            "owner": "alice",
            "egress": egress,
            "params": params,
        }
    )
    context.store.queue_run(request, new_session=new)
    handle_request(message_for(request), context)
    return events()


def create(
    context: Context, events: Any, files: list[dict[str, str]], egress: bool = True, **params: Any
) -> tuple[str, Any]:
    session_id = str(uuid.uuid4())
    created = act(context, events, session_id, "createInstance", {"files": files, **params}, new=True, egress=egress)
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
    assert install_for(["bun.lockb", "package.json"]) is None  # binary: never sent as files (params.py)
    assert install_for(["package-lock.json", "bun.lock", "package.json"]) == bun  # VibSDK's runner installs with bun
    assert install_for(["package.json", "src/package-lock.json"]) is None  # the project's top only
    assert install_for([]) is None
    assert (script_runner(["bun.lock"]), script_runner(["package-lock.json"]), script_runner([])) == (
        "bun",
        "npm",
        "npm",
    )


def test_the_cache_key_covers_the_tools_version(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = install_for(["bun.lock", "package.json"])
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
    context: Context, events: Any, ran: list[str]
) -> None:
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


def test_a_key_without_egress_installs_with_the_scripts_off(context: Context, events: Any, ran: list[str]) -> None:
    package = json.loads((GOLDEN / "project-npm" / "package.json").read_text())
    marker = "mkdir -p node_modules && echo ran > node_modules/preinstall-ran"
    package |= {"description": uuid.uuid4().hex, "scripts": {"preinstall": marker}}
    files = project("project-npm", **{"package.json": json.dumps(package)})  # a key no cache holds
    off, result = create(context, events, files, egress=False)
    assert result["dependencies"]["source"] == "install" and result["dependencies"]["scripts"] == "off"
    assert ran == [common.BUN_CACHE_IN_SCRATCH + "npm ci --no-audit --no-fund --loglevel=error --ignore-scripts"]
    installed = workspace_of(context, off).path / "node_modules"
    assert (installed / "is-number" / "index.js").is_file() and not (installed / "preinstall-ran").exists()
    require_works(context, events, off)

    on, result = create(context, events, files)  # with egress, the very project's preinstall runs
    assert result["dependencies"]["scripts"] == "on"
    assert (workspace_of(context, on).path / "node_modules" / "preinstall-ran").is_file()


def test_the_projects_own_npmrc_and_bunfig_are_not_read_and_the_report_says_so(context: Context, events: Any) -> None:
    _, plain = create(context, events, project("project-npm"))
    config = {
        ".npmrc": "registry=http://127.0.0.1:9/\n",
        "bunfig.toml": "[install]\nregistry = 'http://127.0.0.1:9/'\n",
    }
    session_id, result = create(context, events, project("project-npm", **config))
    assert result["dependencies"]["ignored"] == [".npmrc", "bunfig.toml"]
    # The install reads the key's inputs only: the same key, the same tree, whatever the project's settings.
    assert result["dependencies"]["key"] == plain["dependencies"]["key"] and "ignored" not in plain["dependencies"]
    require_works(context, events, session_id)


def test_a_lockfile_without_its_package_json_fails_saying_so(context: Context, events: Any) -> None:
    lockfile = [item for item in project("project-bun") if item["filePath"] == "bun.lock"]
    failed = act(context, events, str(uuid.uuid4()), "createInstance", {"files": lockfile}, new=True)
    assert failed["status"] == "failed"
    assert "the files have bun.lock but no package.json at the project's top" in failed["error"]


def test_a_binary_bun_lockb_is_refused_saying_what_to_send() -> None:
    for path in ("bun.lockb", "./packages/app/bun.lockb"):
        with pytest.raises(ValidationError) as refused:
            CreateInstanceParams.model_validate({"files": [{"filePath": path, "fileContents": "\0bun-lockfile"}]})
        assert first_error(refused.value) == "files: bun.lockb is binary; send bun.lock (bun 1.2+'s text lockfile)"
    assert CreateInstanceParams.model_validate({"files": [{"filePath": "bun.lockb.txt", "fileContents": "x"}]})


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


def test_a_link_to_a_redacted_file_is_redacted_too(context: Context, events: Any) -> None:
    files = [
        {"filePath": ".redacted_files.json", "fileContents": json.dumps(["secret.txt"])},
        {"filePath": "secret.txt", "fileContents": "hunter2\n"},
    ]
    session_id, _ = create(context, events, files)
    links = "ln -s secret.txt alias.txt && ln secret.txt hard.txt && mkdir d && ln -s .. d/up && cp secret.txt copy.txt"
    linked = act(context, events, session_id, "executeCommands", {"commands": [links]})
    assert linked["status"] == "succeeded", linked
    named = ["alias.txt", "hard.txt", "d/up/secret.txt", "./d/up/alias.txt", "copy.txt"]
    got = act(context, events, session_id, "getFiles", {"filePaths": named})
    contents = {item["filePath"]: item["fileContents"] for item in got["result"]["files"]}
    assert contents == dict.fromkeys(named[:-1], "[REDACTED]") | {"copy.txt": "hunter2\n"}  # a copy is no link
    listed = act(context, events, session_id, "getFiles", {})
    contents = {item["filePath"]: item["fileContents"] for item in listed["result"]["files"]}
    assert contents["hard.txt"] == contents["secret.txt"] == "[REDACTED]"


def test_a_list_nested_too_deep_counts_as_empty(
    context: Context, events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deep = "[" * 200_000  # json.loads: RecursionError, not ValueError
    files = [
        {"filePath": ".redacted_files.json", "fileContents": deep},
        {"filePath": ".donttouch_files.json", "fileContents": deep},
        {"filePath": "secret.txt", "fileContents": "hunter2\n"},
    ]
    session_id, _ = create(context, events, files)
    with caplog.at_level(logging.WARNING, logger="functions.actions.files"):
        written = act(
            context, events, session_id, "writeFiles", {"files": [{"filePath": "secret.txt", "fileContents": "new\n"}]}
        )
        got = act(context, events, session_id, "getFiles", {"filePaths": ["secret.txt"]})
    assert written["status"] == "succeeded" and written["result"]["files"] == [{"file": "secret.txt", "success": True}]
    assert got["status"] == "succeeded" and got["result"]["files"] == [
        {"filePath": "secret.txt", "fileContents": "new\n"}
    ]
    assert ".donttouch_files.json is not a JSON array" in caplog.text
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


def test_a_secret_the_output_cap_cut_is_blanked_where_it_starts() -> None:
    secret = "sk-abcabd-0123456789"
    env = {"KEY": secret}
    for kept in ("sk-abcab", "sk-abcabd-01", "s"):  # "sk-abcab": a match that fails must fall back correctly
        cut = CommandResult("yes", -9, b"." * (100 - len(kept)) + kept.encode(), b"", 0.1, "output over 0 MiB")
        assert redacted(cut, env, cap=100).stdout == b"." * (100 - len(kept)) + b"[REDACTED]", kept
    cut = CommandResult("yes", -9, b"." * 90 + b"sk-abcabc", b"", 0.1)  # ends in "abc", no prefix of the secret
    assert redacted(cut, env, cap=99).stdout == cut.stdout
    whole = CommandResult("echo", 0, b"done: sk-ab", b"", 0.1)  # not cut: its end is the command's own output
    assert redacted(whole, env, cap=100).stdout == b"done: sk-ab"


def test_a_secret_cut_by_the_output_cap_does_not_leak(
    context: Context, events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    session_id, _ = create(context, events, [{"filePath": "a.txt", "fileContents": "a"}], envVars={"K": secret})
    cap = 1 << 16
    monkeypatch.setattr(Limits, "of", classmethod(lambda cls, settings: cls(output_bytes=cap)))
    # The output's last 10 bytes under the cap are the secret's first 10 (the red team's 16 MiB - 10).
    flood = f'head -c {cap - 10} /dev/zero | tr "\\0" .; printf %s "$K"; sleep 20'
    done = act(context, events, session_id, "executeCommands", {"commands": [flood]})
    assert "output over" in json.dumps(done), done
    assert secret[:10] not in json.dumps(done)
    logs = act(context, events, session_id, "getLogs", {})
    assert secret[:10] not in json.dumps(logs)


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
