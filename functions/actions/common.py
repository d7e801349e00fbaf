"""What several actions need: the instance they act on, and a command run in its sandbox."""

from __future__ import annotations

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
    return run_command(command, workspace, seconds, env, Limits.of(ctx.settings), egress_for)
