"""What several actions need: the instance they act on, and a command run in its sandbox."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from functions import isolation
from functions.context import Context
from functions.dependencies import DependencyCache, InstallSpec, give, read_inputs
from functions.diagnostics import Paths
from functions.instances import Instance, load_instance, workspace_of
from functions.sandbox import CommandResult, Egress, Limits, prepare_workspace, run_command
from functions.workspace import Workspace
from vibesdk_gcp.errors import ActionFailed, Unsupported
from vibesdk_gcp.params import Params
from vibesdk_gcp.schemas import SandboxRequest, SessionChanges

Result = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A handler's answer when the action changes its session: the client's result, and the changes.

    Two things, so that a result too big to keep inline (spilled to Cloud Storage) never takes the
    session's changes with it.
    """

    result: Result
    session: SessionChanges | None = None


def unsupported(request: SandboxRequest, params: Params, ctx: Context) -> Result:
    raise Unsupported(f"{request.action} is unsupported on this runtime")


def require_instance(ctx: Context, session_id: str) -> Instance:
    instance = load_instance(ctx, session_id)
    if instance is None:
        raise ActionFailed(f"session {session_id} has no instance: run createInstance first")
    return instance


def excerpt(data: bytes, limit: int) -> tuple[str, bool]:
    """The output's tail, where errors are, cut to the limit."""
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace"), False
    return "[...cut...]\n" + data[-limit:].decode("utf-8", errors="replace"), True


def paths_of(workspace: Workspace) -> Paths:
    """What turns the paths a tool printed in the sandbox into the workspace's own."""
    backend, _ = isolation.selected()
    return Paths(workspace.path, (backend.workspace_inside if backend else None,))


def ready_workspace(ctx: Context, request: SandboxRequest, instance: Instance) -> Workspace:
    """The session's working copy, restored, with its dependencies installed for its lockfile."""
    workspace = workspace_of(ctx, request.sessionId)
    workspace.restore()
    spec = InstallSpec.of(instance.install)
    if spec:
        workspace.installed = install_dependencies(ctx, request, spec, workspace)
    prepare_workspace(workspace.path, spec.folder if spec else None)
    return workspace


def install_dependencies(
    ctx: Context, request: SandboxRequest, spec: InstallSpec, workspace: Workspace
) -> dict[str, Any]:
    """Give the workspace the installed tree of its current lockfile, building it on a first use.

    The install reaches the package registries through the egress proxy. Its packages' scripts
    (and the project's own lifecycle scripts, which the tenant writes) run only for a key with
    network: for one without, a tree from the cache, else an install with scripts off.
    """
    started = time.monotonic()
    inputs = read_inputs(spec, workspace.path)
    if inputs is None:
        # Nothing to install from; what was given stays, still not the workspace's own files.
        return {"source": "none", "reason": f"no {' or '.join(spec.inputs)} in the workspace"}
    cache = DependencyCache(ctx.storage, ctx.settings.workspace_root)
    if request.egress:
        choices = [(spec, "on")]
    else:
        choices = [(spec, "none run: the tree was in the cache"), (spec.without_scripts(inputs), "off")]
    for number, (chosen, scripts) in enumerate(choices, 1):
        key = chosen.key(inputs)
        base = workspace.base()
        if base and base["key"] == key and base.get("stamp") == cache.stamp(key):
            return {"key": key, "source": "workspace", "scripts": scripts, "seconds": _since(started)}
        build = _installer(ctx, request, chosen, inputs) if number == len(choices) else None
        with cache.holding(key, build) as tree:
            if tree is None:
                continue  # not in any cache: installed with scripts off
            remade = bool(base and base["key"] == key)  # the tree was made again since it was given
            if base:
                # A new lockfile (or a tree made again): the new tree replaces the old one, and
                # what was changed in it.
                shutil.rmtree(workspace.path / chosen.folder, ignore_errors=True)
            given = give(tree, workspace.path, chosen.folder)
            stamp = cache.stamp(key)
            workspace.set_base({"key": key, "folder": chosen.folder, "tree": str(tree), "stamp": stamp})
        if remade:
            workspace.restore()  # the session's own changes in the folder come back
        source = cache.last_source
        return {"key": key, "source": source, "scripts": scripts, "files": given, "seconds": _since(started)}
    raise AssertionError("the last choice always builds")


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _installer(
    ctx: Context, request: SandboxRequest, spec: InstallSpec, inputs: dict[str, bytes]
) -> Callable[[Path], Path]:
    """What builds the tree on a cache miss: the install, in the sandbox, in a scratch folder."""

    def build(scratch: Path) -> Path:
        for name, data in inputs.items():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            (scratch / name).write_bytes(data)
        prepare_workspace(scratch)
        egress_for = Egress(request.sessionId, request.runId, request.owner)
        outcome = run_in_sandbox(ctx, spec.command, scratch, None, egress_for=egress_for)
        if outcome.exit_code != 0 or outcome.killed_reason:
            reason = outcome.killed_reason or f"exited with code {outcome.exit_code}"
            # npm and pip say why first, then print their usage or a log's name: the head, not the tail.
            detail = (outcome.stderr.strip() or outcome.stdout.strip())[:2000].decode(errors="replace")
            raise ActionFailed(f"installing dependencies ({spec.command!r}) {reason}: {detail}")
        folder = scratch / spec.folder
        if folder.is_symlink() or not folder.is_dir():
            raise ActionFailed(f"installing dependencies ({spec.command!r}) left no {spec.folder}/ folder")
        return folder

    return build


def run_in_sandbox(
    ctx: Context,
    command: str,
    workspace: Path,
    env: dict[str, str] | None,
    timeout: float | None = None,
    egress_for: Egress | None = None,
) -> CommandResult:
    """One command in the sandbox, with the job's timeout (unless given) and disk quotas."""
    seconds = timeout or ctx.settings.command_timeout_seconds
    return redacted(run_command(command, workspace, seconds, env, Limits.of(ctx.settings), egress_for), env)


# Shorter values would blank out ordinary words.
MIN_SECRET_CHARS = 4


def redacted(outcome: CommandResult, env: dict[str, str] | None) -> CommandResult:
    """The outcome with the instance's envVars values blanked: a failing command may print them,
    and its output reaches the run's error, the logs bucket and the job's log lines."""
    secrets = sorted({value for value in (env or {}).values() if len(value) >= MIN_SECRET_CHARS}, key=len, reverse=True)
    if not secrets:
        return outcome
    stdout, stderr = outcome.stdout, outcome.stderr
    for secret in secrets:
        stdout = stdout.replace(secret.encode(), b"[redacted]")
        stderr = stderr.replace(secret.encode(), b"[redacted]")
    return dataclasses.replace(outcome, stdout=stdout, stderr=stderr)
