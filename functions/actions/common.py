"""What several actions need: the instance they act on, and a command run in its sandbox."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from functions.context import Context
from functions.instances import Instance, load_instance
from functions.sandbox import CommandResult, Egress, Limits, run_command
from vibesdk_gcp.errors import ActionFailed


def require_instance(ctx: Context, session_id: str) -> Instance:
    instance = load_instance(ctx, session_id)
    if instance is None:
        raise ActionFailed(f"session {session_id} has no instance: run createInstance first")
    return instance


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
