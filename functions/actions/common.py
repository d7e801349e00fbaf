"""What several actions need: the instance they act on, and a command run in its sandbox."""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

from functions import isolation
from functions.context import Context
from functions.dependencies import DependencyCache, InstallSpec, give, read_inputs
from functions.diagnostics import Paths
from functions.instances import Instance, load_instance, workspace_of
from functions.sandbox import CommandResult, Egress, Limits, prepare_workspace, run_command
from functions.workspace import Workspace
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.schemas import SandboxRequest


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
        install_dependencies(ctx, request, spec, workspace)
    prepare_workspace(workspace.path, spec.folder if spec else None)
    return workspace


def install_dependencies(
    ctx: Context, request: SandboxRequest, spec: InstallSpec, workspace: Workspace
) -> dict[str, Any]:
    """Give the workspace the installed tree of its current lockfile, building it on a first use.

    The install reaches the package registries through the egress proxy whatever the key's
    network capability: it is the template's own step, and the proxy's allow-list bounds it.
    """
    started = time.monotonic()
    inputs = read_inputs(spec, workspace.path)
    if inputs is None:
        # Nothing to install from; what was given stays, still not the workspace's own files.
        return {"source": "none", "reason": f"no {' or '.join(spec.inputs)} in the workspace"}
    key = spec.key(inputs)
    base = workspace.base()
    if base and base["key"] == key:
        return {"key": key, "source": "workspace", "seconds": round(time.monotonic() - started, 3)}

    def build(scratch: Path) -> Path:
        for name, data in inputs.items():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            (scratch / name).write_bytes(data)
        prepare_workspace(scratch)
        outcome = run_in_sandbox(ctx, spec.command, scratch, None, egress_for=Egress(request.sessionId, request.runId))
        if outcome.exit_code != 0 or outcome.killed_reason:
            reason = outcome.killed_reason or f"exited with code {outcome.exit_code}"
            # npm and pip say why first, then print their usage or a log's name: the head, not the tail.
            detail = (outcome.stderr.strip() or outcome.stdout.strip())[:2000].decode(errors="replace")
            raise ActionFailed(f"installing dependencies ({spec.command!r}) {reason}: {detail}")
        folder = scratch / spec.folder
        if folder.is_symlink() or not folder.is_dir():
            raise ActionFailed(f"installing dependencies ({spec.command!r}) left no {spec.folder}/ folder")
        return folder

    cache = DependencyCache(ctx.storage, ctx.settings.workspace_root)
    tree = cache.ensure(key, build)
    target = workspace.path / spec.folder
    if base:
        # A new lockfile: the new tree replaces the old one, and what was changed in it.
        if target.is_symlink():
            target.unlink()
        shutil.rmtree(target, ignore_errors=True)
    given = give(tree, target)
    workspace.set_base({"key": key, "folder": spec.folder, "tree": str(tree)})
    return {"key": key, "source": cache.last_source, "files": given, "seconds": round(time.monotonic() - started, 3)}


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
