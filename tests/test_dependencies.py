"""The react-vite template's dependencies: installed through the egress proxy, cached once per
lockfile in Cloud Storage and on the instance, given to workspaces by link, saved as differences."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from devstack.templates import upload_templates
from functions.context import Context
from functions.dependencies import DEPS_PREFIX, DependencyCache, InstallSpec, read_inputs
from functions.instances import workspace_of
from functions.local_disk import DEPENDENCIES_FOLDER, LocalDisk
from functions.workspace import Workspace
from tests import test_job
from tests.test_job import run
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.names import WORKSPACES_BUCKET

TEMPLATE = "react-vite"
status_events = test_job.status_events  # the fixture


@pytest.fixture
def events(status_events: Any) -> Any:
    return status_events


def create(context: Context, events: Any) -> tuple[str, dict[str, Any]]:
    session_id = str(uuid.uuid4())
    run(context, session_id, "createInstance", {"templateName": TEMPLATE}, new=True)
    created = events()
    assert created["status"] == "succeeded", created
    return session_id, created["result"]


def act(
    context: Context, events: Any, session_id: str, action: str, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    run(context, session_id, action, params)
    return events()


def stored_names(context: Context, session_id: str) -> list[str]:
    """What the session's store holds: restored from scratch elsewhere, with no tree given."""
    elsewhere = Workspace(context.storage, LocalDisk(context.settings.workspace_root / "elsewhere"), session_id)
    elsewhere.restore()
    names = sorted(p.relative_to(elsewhere.path).as_posix() for p in elsewhere.path.rglob("*") if p.is_file())
    elsewhere.start_empty()
    return names


def stored_archive(context: Context, key: str) -> str:
    """The archive the key's record names: by its own sha256."""
    record = json.loads(context.storage.read(WORKSPACES_BUCKET, f"{DEPS_PREFIX}{key}.json"))
    return f"{DEPS_PREFIX}{key}/{record['sha256']}.tar.gz"


def test_dependencies_are_installed_once_and_shared(context: Context, events: Any) -> None:
    upload_templates(context.storage)
    first, result = create(context, events)
    assert result["dependencies"]["source"] == "install"
    workspace = workspace_of(context, first).path
    react = workspace / "node_modules" / "react" / "index.js"
    assert react.is_file() and (workspace / "node_modules" / ".bin" / "vite").is_symlink()
    if os.geteuid() == 0:
        assert react.stat().st_nlink >= 2 and react.stat().st_uid == 0  # a link to the job's tree
    # The workspace keeps its own files only.
    assert not [name for name in stored_names(context, first) if name.startswith("node_modules/")]
    key = result["dependencies"]["key"]
    assert {info.name for info in context.storage.list(WORKSPACES_BUCKET, DEPS_PREFIX)} == {
        stored_archive(context, key),
        f"{DEPS_PREFIX}{key}.json",
    }

    second, result = create(context, events)
    assert result["dependencies"] == result["dependencies"] | {"key": key, "source": "instance"}

    # A new job instance: nothing local, the tree comes from Cloud Storage.
    shutil.rmtree(context.settings.workspace_root / DEPENDENCIES_FOLDER)
    third, result = create(context, events)
    assert result["dependencies"]["source"] == "storage"


def test_a_corrupt_or_partial_cache_entry_is_rebuilt(context: Context, events: Any) -> None:
    upload_templates(context.storage)
    _, result = create(context, events)
    key = result["dependencies"]["key"]
    archive = stored_archive(context, key)
    context.storage.write(WORKSPACES_BUCKET, archive, b"not a tarball", "application/gzip")
    shutil.rmtree(context.settings.workspace_root / DEPENDENCIES_FOLDER)
    _, result = create(context, events)
    assert result["dependencies"]["source"] == "install"  # the record's sha256 did not match

    context.storage.delete(WORKSPACES_BUCKET, f"{DEPS_PREFIX}{key}.json")  # an archive without its record
    shutil.rmtree(context.settings.workspace_root / DEPENDENCIES_FOLDER)
    _, result = create(context, events)
    assert result["dependencies"]["source"] == "install"

    # A tree unpacked half-way (no marker) on the instance is unpacked again.
    (context.settings.workspace_root / DEPENDENCIES_FOLDER / key / "complete").unlink()
    _, result = create(context, events)
    assert result["dependencies"]["source"] == "storage"


def test_commands_cannot_write_the_shared_tree(context: Context, events: Any) -> None:
    if os.geteuid() != 0:
        pytest.skip("the job runs as the sandbox's uid: workspaces get copies, not links")
    upload_templates(context.storage)
    session_id, result = create(context, events)
    tree = context.settings.workspace_root / DEPENDENCIES_FOLDER / result["dependencies"]["key"] / "tree"
    before = (tree / "react" / "index.js").read_bytes()
    done = act(
        context,
        events,
        session_id,
        "executeCommands",
        {"commands": ["echo 'oops' >> node_modules/react/index.js"]},
    )
    assert done["status"] == "failed" and "Permission denied" in done["error"]
    assert (tree / "react" / "index.js").read_bytes() == before


def test_a_changed_lockfile_installs_a_new_key_and_saves_stay_small(context: Context, events: Any) -> None:
    upload_templates(context.storage)
    session_id, result = create(context, events)
    old_key = result["dependencies"]["key"]
    installed = act(
        context,
        events,
        session_id,
        "executeCommands",
        {"commands": ["npm install --no-audit --no-fund --save-exact clsx@2.1.1"], "allowNetwork": True},
    )
    assert installed["status"] == "succeeded", installed
    names = stored_names(context, session_id)
    # What npm added is the workspace's own until the next action installs the new lockfile.
    assert "node_modules/clsx/package.json" in names
    assert len([n for n in names if n.startswith("node_modules/")]) < 20

    used = act(context, events, session_id, "executeCommands", {"commands": ["node -e \"require('clsx')\""]})
    assert used["status"] == "succeeded", used
    base = json.loads((context.settings.workspace_root / session_id / "base.json").read_text())
    assert base["key"] != old_key
    assert not [n for n in stored_names(context, session_id) if n.startswith("node_modules/")]


def test_install_inputs_are_never_read_through_a_link(tmp_path: Path) -> None:
    from functions.dependencies import InstallSpec, read_inputs
    from vibesdk_gcp.errors import ActionFailed

    spec = InstallSpec("npm ci", "node_modules", ("package-lock.json", "package.json"))
    (tmp_path / "package.json").write_text("{}")
    assert read_inputs(spec, tmp_path) is None  # no lockfile: nothing to install
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    secret.write_text("the job's own file")
    (tmp_path / "package-lock.json").symlink_to(secret)
    with pytest.raises(ActionFailed, match="cannot be read"):
        read_inputs(spec, tmp_path)
    (tmp_path / "package-lock.json").unlink()
    (tmp_path / "package-lock.json").mkdir()
    with pytest.raises(ActionFailed, match="not a regular file|cannot be read"):
        read_inputs(spec, tmp_path)


def test_an_installed_folder_becomes_the_jobs_own_read_only_tree(tmp_path: Path) -> None:
    from functions.dependencies import _make_owned_by_job

    folder = tmp_path / "node_modules"
    (folder / "pkg" / "bin").mkdir(parents=True)
    (folder / "pkg" / "index.js").write_text("module.exports = 1\n")
    (folder / "pkg" / "index.js").chmod(0o666)
    (folder / "pkg" / "bin" / "cli.js").write_text("#!/usr/bin/env node\n")
    (folder / "pkg" / "bin" / "cli.js").chmod(0o777)
    (folder / ".bin").mkdir()
    (folder / ".bin" / "cli").symlink_to("../pkg/bin/cli.js")
    (folder / "escape").symlink_to("/etc/passwd")
    (folder / "up").symlink_to("../../outside")
    os.mkfifo(folder / "pipe")
    if os.geteuid() == 0:
        os.chown(folder / "pkg" / "index.js", 65534, 65534)
    _make_owned_by_job(folder)
    assert (folder / "pkg" / "index.js").stat().st_mode & 0o777 == 0o644
    assert (folder / "pkg" / "bin" / "cli.js").stat().st_mode & 0o777 == 0o755
    assert (folder / "pkg" / "index.js").stat().st_uid == os.getuid()
    assert os.readlink(folder / ".bin" / "cli") == "../pkg/bin/cli.js"
    assert not any(os.path.lexists(folder / name) for name in ("escape", "up", "pipe"))


def test_a_broken_lockfile_fails_the_action_with_npms_words(context: Context, events: Any) -> None:
    upload_templates(context.storage)
    session_id, _ = create(context, events)
    broken = act(
        context,
        events,
        session_id,
        "writeFiles",
        {"files": [{"filePath": "package-lock.json", "fileContents": "{ not json"}]},
    )
    assert broken["status"] == "succeeded"  # writing is not installing
    done = act(context, events, session_id, "executeCommands", {"commands": ["true"]})
    assert done["status"] == "failed"
    assert done["error"].startswith("installing dependencies ('npm ci") and "exited with code" in done["error"]
    assert "package-lock.json" in done["error"] or "JSON" in done["error"], done["error"]
    # The agent can mend it: the file is writable, and the next action installs again.
    lock = (Path(__file__).resolve().parents[1] / "templates" / TEMPLATE / "package-lock.json").read_text()
    act(context, events, session_id, "writeFiles", {"files": [{"filePath": "package-lock.json", "fileContents": lock}]})
    assert act(context, events, session_id, "executeCommands", {"commands": ["true"]})["status"] == "succeeded"


def test_a_tree_changed_on_disk_is_dropped_and_made_again(context: Context, events: Any) -> None:
    """A poisoned tree once outlived a restart of `make dev` and broke the next build: a tree is
    checked against what the job recorded of it before it is given out again."""
    upload_templates(context.storage)
    _, result = create(context, events)
    key = result["dependencies"]["key"]
    tree = context.settings.workspace_root / DEPENDENCIES_FOLDER / key / "tree"
    target = tree / "react" / "index.js"
    original, info = target.read_bytes(), target.stat()

    # Other contents of the same size and time: only reading them tells, as a new process does.
    target.write_bytes(original.replace(b"production", b"PRODUCTION"))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    context = Context(context.settings, context.store, context.bus, context.storage)  # a new job process, same disk
    session_id, result = create(context, events)
    assert result["dependencies"]["source"] == "storage"  # dropped, and unpacked from its archive
    assert target.read_bytes() == original
    assert (workspace_of(context, session_id).path / "node_modules/react/index.js").read_bytes() == original

    # A file given away (as root's chown once did) is seen by its owner, in the same process.
    os.chown(target, 65534, 65534)
    _, result = create(context, events)
    assert result["dependencies"]["source"] == "storage"
    assert target.stat().st_uid == os.getuid()


def test_a_key_without_network_runs_no_install_script(context: Context, events: Any) -> None:
    """A tenant's lifecycle script got the proxy through the install of a key issued --no-egress."""
    upload_templates(context.storage)
    session_id, _ = create(context, events)
    package = json.loads((workspace_of(context, session_id).path / "package.json").read_text())
    # Proof of network: the script asks the registry through the proxy, into the installed folder.
    package["scripts"]["postinstall"] = "npm view is-number@7.0.0 version > node_modules/.reached"
    files = [{"filePath": "package.json", "fileContents": json.dumps(package, indent=2)}]
    assert act(context, events, session_id, "writeFiles", {"files": files})["status"] == "succeeded"

    run(context, session_id, "executeCommands", {"commands": ["ls node_modules/.reached || true"]}, egress=False)
    done = events()
    assert done["status"] == "succeeded", done
    assert done["result"]["results"][0]["output"] == ""  # the script never ran
    assert done["result"]["dependencies"]["scripts"] == "off"

    # The same install for a key with network runs it, through the proxy.
    run(context, session_id, "executeCommands", {"commands": ["cat node_modules/.reached"]}, egress=True)
    done = events()
    assert done["status"] == "succeeded", done
    assert done["result"]["results"][0]["output"] == "7.0.0\n"


@pytest.mark.parametrize(
    ("requirements", "refused"),
    [
        # A direct-URL sdist: pip builds it (runs its setup.py) even with --only-binary=:all:.
        (b"six @ https://files.pythonhosted.org/six-1.16.0.tar.gz --hash=sha256:" + b"0" * 64, "not a pinned"),
        # An option line that starts like a hash: pip applies --no-binary over the command line's.
        (b"--hash=sha256:" + b"0" * 64 + b" --no-binary six", "not a pinned"),
        # pip decodes the file by its coding line: `+AC0ALQ-no-binary` is `--no-binary` in UTF-7.
        (b"# -*- coding: utf-7 -*-\n+AC0ALQ-no-binary six", "encoding declaration"),
        ("\ufeffsix==1.16.0".encode(), "not ASCII"),
        (b"-r more.txt", "not a pinned"),
        (b"--index-url https://elsewhere.example/simple\nsix==1.16.0", "not a pinned"),
        (b"./vendored/six", "not a pinned"),
    ],
)
def test_a_key_without_network_installs_only_pinned_hashed_wheels(requirements: bytes, refused: str) -> None:
    """A red-team review found three ways past --only-binary for a key without network."""
    spec = InstallSpec("python3 -m pip install --require-hashes -r requirements-dev.txt", ".pydeps", ("r",))
    with pytest.raises(ActionFailed, match=refused):
        spec.without_scripts({"requirements-dev.txt": requirements})
    template = (Path(__file__).parent.parent / "templates/python-app/requirements-dev.txt").read_bytes()
    assert spec.without_scripts({"requirements-dev.txt": template}).command.endswith(" --only-binary=:all:")


def test_a_pipe_named_like_a_lockfile_never_blocks_the_job(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes: a command's `mkfifo package-lock.json`
    held a worker (and the session's later runs) for ever."""
    (tmp_path / "package.json").write_text("{}")
    os.mkfifo(tmp_path / "package-lock.json")
    spec = InstallSpec("npm ci", "node_modules", ("package-lock.json", "package.json"))
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(outcome, lambda: read_inputs(spec, tmp_path)), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "read_inputs blocked on a pipe"
    assert isinstance(outcome[0], ActionFailed) and "not a regular file" in str(outcome[0])


def _catch(into: list[BaseException], call: Any) -> None:
    try:
        call()
    except BaseException as error:  # the test looks at what it was
        into.append(error)


def test_an_install_without_one_of_its_inputs_names_it(context: Context) -> None:
    workspace = workspace_of(context, str(uuid.uuid4()))
    workspace.start_empty()
    (workspace.path / "bun.lock").write_text("{}")
    (workspace.path / ".npmrc").write_text("registry=http://127.0.0.1:9/\n")
    spec = InstallSpec("bun install --frozen-lockfile", "node_modules", ("bun.lock", "package.json"))

    def never(command: str, scratch: Path) -> None:
        pytest.fail("nothing installs without its inputs")

    report = context.dependencies.install(spec, workspace, True, never)
    assert report.as_result() == {"source": "none", "reason": "no package.json in the workspace", "ignored": [".npmrc"]}
    pip = InstallSpec("pip install -r requirements.txt -t .deps", ".deps", ("requirements.txt",))
    assert context.dependencies.install(pip, workspace, True, never).as_result() == {
        "source": "none",
        "reason": "no requirements.txt in the workspace",  # and no npm or bun settings to speak of
    }


def test_two_instances_building_the_same_key_at_once_both_get_a_whole_tree(
    context: Context, events: Any, sandbox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both miss every cache and install: each stores its archive under its own sha256 and the
    record names one of them, whole; a third instance unpacks that one."""
    upload_templates(context.storage)
    both_missed = threading.Barrier(2, timeout=120)
    build = DependencyCache._build

    def build_once_both_missed(cache: DependencyCache, key: str, builder: Any) -> Path:
        both_missed.wait()  # neither has stored anything yet
        return build(cache, key, builder)

    monkeypatch.setattr(DependencyCache, "_build", build_once_both_missed)
    instances = [context] + [
        Context(
            dataclasses.replace(context.settings, workspace_root=Path(tempfile.mkdtemp(dir=sandbox_root))),
            context.store,
            context.bus,
            context.storage,
        )
        for _ in range(2)
    ]
    sessions = [str(uuid.uuid4()) for _ in instances]
    creating = [
        threading.Thread(target=run, args=(ctx, session, "createInstance", {"templateName": "static-site"}, True))
        for ctx, session in zip(instances[:2], sessions, strict=False)
    ]
    for thread in creating:
        thread.start()
    for thread in creating:
        thread.join(timeout=300)
    monkeypatch.setattr(DependencyCache, "_build", build)
    results = [events(), events()]
    assert [r["status"] for r in results] == ["succeeded", "succeeded"], results
    assert {r["result"]["dependencies"]["source"] for r in results} == {"install"}, results
    key = results[0]["result"]["dependencies"]["key"]
    assert results[1]["result"]["dependencies"]["key"] == key
    record = json.loads(context.storage.read(WORKSPACES_BUCKET, f"{DEPS_PREFIX}{key}.json"))
    archive = context.storage.read(WORKSPACES_BUCKET, stored_archive(context, key))
    assert (len(archive), hashlib.sha256(archive).hexdigest()) == (record["size"], record["sha256"])
    run(instances[2], sessions[2], "createInstance", {"templateName": "static-site"}, new=True)
    third = events()
    assert third["result"]["dependencies"]["source"] == "storage", third
    for ctx, session in zip(instances, sessions, strict=True):
        done = act(ctx, events, session, "executeCommands", {"commands": ["npx --no-install html-validate --version"]})
        assert done["status"] == "succeeded", done
