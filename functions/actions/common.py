"""What several actions need: the instance they act on, and a command run in its sandbox."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from functions.context import Context
from functions.dependencies import InstallReport, InstallSpec, RunInstall
from functions.diagnostics import Paths
from functions.instances import Instance, load_instance, workspace_of
from functions.sandbox import CommandResult, Egress, Limits
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


def paths_of(ctx: Context, workspace: Workspace) -> Paths:
    """What turns the paths a tool printed in the sandbox into the workspace's own."""
    backend, _ = ctx.sandbox.isolation.selected()
    return Paths(workspace.path, (backend.workspace_inside if backend else None,))


def ready_workspace(ctx: Context, request: SandboxRequest, instance: Instance, build: bool = True) -> Workspace:
    """The session's working copy, restored, with its dependencies installed for its lockfile
    (without `build`, only when a cache holds them: what a read shows on any instance, which runs
    no command, so the working copy is not handed to the sandbox's user either)."""
    workspace = workspace_of(ctx, request.sessionId)
    workspace.restore()
    spec = InstallSpec.of(instance.install)
    if spec:
        workspace.installed = install(ctx, request, spec, workspace, build).as_result()
    if build:
        ctx.sandbox.prepare(workspace.path, spec.folder if spec else None)
    return workspace


def new_install(workspace: Workspace) -> Result | None:
    """The install report when the action installed a new lockfile's tree first (else None)."""
    installed = workspace.installed
    return installed if installed and installed.get("source") not in ("workspace", "none") else None


def install(
    ctx: Context, request: SandboxRequest, spec: InstallSpec, workspace: Workspace, build: bool = True
) -> InstallReport:
    """The workspace given the installed tree of its lockfile (functions/dependencies.py); the
    packages' scripts run only for a key with network."""
    return ctx.dependencies.install(spec, workspace, bool(request.egress), _installer(ctx, request), build)


# bun's package cache in the command's own /tmp, as npm's is (HOME is there): never a cache
# another session's install could have filled.
BUN_CACHE_IN_SCRATCH = 'export BUN_INSTALL_CACHE_DIR="$TMPDIR/bun-install-cache"; '


def _installer(ctx: Context, request: SandboxRequest) -> RunInstall:
    """What runs the install on a cache miss: in the sandbox, through the egress proxy."""

    def run(command: str, scratch: Path) -> None:
        ctx.sandbox.prepare(scratch)
        egress_for = Egress(request.sessionId, request.runId, request.owner)
        outcome = run_in_sandbox(ctx, BUN_CACHE_IN_SCRATCH + command, scratch, None, egress_for=egress_for)
        if outcome.exit_code != 0 or outcome.killed_reason:
            # npm and pip say why first, then print their usage or a log's name: the head, not the tail.
            detail = (outcome.stderr.strip() or outcome.stdout.strip())[:2000].decode(errors="replace")
            raise ActionFailed(f"installing dependencies ({command!r}) {outcome.ended}: {detail}")

    return run


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
    limits = Limits.of(ctx.settings)
    return redacted(ctx.sandbox.run(command, workspace, seconds, env, limits, egress_for), env, limits.output_bytes)


# Shorter values would blank out ordinary words.
MIN_SECRET_CHARS = 4
REDACTED = "[REDACTED]"


def redacted(outcome: CommandResult, env: dict[str, str] | None, cap: int | None = None) -> CommandResult:
    """The outcome with the instance's envVars values blanked: a failing command may print them,
    and its output reaches every answer made of it (the results' output and error, the run's
    error, initOutput, getLogs by way of the logs bucket) and the job's log lines. Here, as
    every command runs through run_in_sandbox, before anything is cut or kept.

    An output the sandbox cut at `cap` bytes (functions/sandbox.py) may end in a secret's first
    bytes: that end is blanked too."""
    secrets = sorted({value for value in (env or {}).values() if len(value) >= MIN_SECRET_CHARS}, key=len, reverse=True)
    if not secrets:
        return outcome
    streams = []
    for data in (outcome.stdout, outcome.stderr):
        cut = cap is not None and len(data) >= cap
        for secret in secrets:
            data = data.replace(secret.encode(), REDACTED.encode())
        if cut:
            start = min(len(data) - _secret_start(data, secret.encode()) for secret in secrets)
            data = data[:start] + REDACTED.encode() if start < len(data) else data
        streams.append(data)
    return dataclasses.replace(outcome, stdout=streams[0], stderr=streams[1])


def _secret_start(data: bytes, secret: bytes) -> int:
    """How many of data's last bytes are the secret's first ones (0: none); linear (KMP), as a
    value may be long."""
    tail = data[-(len(secret) - 1) :] if len(secret) > 1 else b""
    fallback = [0] * len(secret)  # the longest proper prefix of secret[: i + 1] that is also its suffix
    matched = 0
    for i in range(1, len(secret)):
        while matched and secret[i] != secret[matched]:
            matched = fallback[matched - 1]
        matched += secret[i] == secret[matched]
        fallback[i] = matched
    matched = 0
    for byte in tail:
        while matched and byte != secret[matched]:
            matched = fallback[matched - 1]
        matched += byte == secret[matched]
        if matched == len(secret):
            matched = fallback[matched - 1]
    return matched
