"""executeCommands and the logs and errors it leaves behind."""

from __future__ import annotations

import time

from functions import live
from functions.actions.common import Result, excerpt, new_install, paths_of, ready_workspace, run_in_sandbox
from functions.actions.runtime_errors import record_errors
from functions.context import Context
from functions.diagnostics import Issue, command_errors
from functions.instances import Instance, save_instance
from functions.sandbox import CommandResult, Egress
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.names import LOGS_BUCKET
from vibesdk_gcp.params import ExecuteCommandsParams, GetLogsParams, Params
from vibesdk_gcp.schemas import SandboxRequest


def _log_prefix(session_id: str) -> str:
    return f"{session_id}/logs/"


def _keep_logs(ctx: Context, request: SandboxRequest, index: int, outcome: CommandResult) -> str:
    # Millisecond time first, so the names sort and filter by when they ran.
    base = f"{_log_prefix(request.sessionId)}{int(time.time() * 1000):013d}-{request.runId}-{index}"
    ctx.storage.write(LOGS_BUCKET, base + ".stdout", outcome.stdout, "text/plain")
    ctx.storage.write(LOGS_BUCKET, base + ".stderr", outcome.stderr, "text/plain")
    return f"gs://{LOGS_BUCKET}/{base}"


def _command_entry(ctx: Context, outcome: CommandResult, log: str) -> Result:
    limit = ctx.settings.output_excerpt_bytes
    output, output_cut = excerpt(outcome.stdout, limit)
    error, error_cut = excerpt(outcome.stderr, limit)
    if outcome.killed_reason:
        error += f"\n[killed: {outcome.killed_reason}]"
    return {
        "command": outcome.command,
        "success": outcome.exit_code == 0 and not outcome.killed_reason,
        "exitCode": outcome.exit_code,
        "output": output,
        "error": error,
        "truncated": output_cut or error_cut,
        "durationMs": round(outcome.duration_seconds * 1000),
        "log": log,
    }


def execute_commands(
    request: SandboxRequest, params: ExecuteCommandsParams, ctx: Context, instance: Instance
) -> Result:
    # Network, when asked for, only through the allow-list egress proxy (functions/egress.py).
    egress_for = Egress(request.sessionId, request.runId, request.owner) if params.allowNetwork else None
    # The whole action ends within the delivery's deadline (and Cloud Run's request timeout): a
    # command never outlives the request that runs it, a dependency install included.
    ends = time.monotonic() + ctx.settings.max_action_seconds
    workspace = ready_workspace(ctx, request, instance)
    timeout = params.timeout or ctx.settings.command_timeout_seconds
    results: list[Result] = []
    found: list[Issue] = []
    ended: str | None = None  # how the command that failed ended: the commands after it are not run
    for index, command in enumerate(params.commands):
        left = ends - time.monotonic()
        if left < 1:
            raise ActionFailed(
                f"the action's {ctx.settings.max_action_seconds} s are spent: {command!r} and what follows did not run",
                {"results": results},
            )
        outcome = run_in_sandbox(ctx, command, workspace.path, instance.envVars, min(timeout, left), egress_for)
        entry = _command_entry(ctx, outcome, _keep_logs(ctx, request, index, outcome))
        results.append(entry)
        found += command_errors(entry["error"] + "\n" + entry["output"], command, paths_of(ctx, workspace))
        if not entry["success"]:
            ended = outcome.ended
            break
    report = workspace.save()  # what the commands changed is kept even when one failed
    record_errors(ctx, request, instance, found)
    live.after_change(ctx, request, instance, report)
    if ended:
        failed = results[-1]
        raise ActionFailed(
            f"command {failed['command']!r} {ended}: {failed['error'][-1000:].strip()}", {"results": results}
        )
    if installed := new_install(workspace):
        return {"results": results, "dependencies": installed}  # a new lockfile was installed first
    return {"results": results}


def get_logs(request: SandboxRequest, params: GetLogsParams, ctx: Context, instance: Instance) -> Result:
    since_ms = 0
    if params.durationSeconds:
        since_ms = int((time.time() - params.durationSeconds) * 1000)
    if params.onlyRecent and instance.logsReadAtMs:
        since_ms = max(since_ms, instance.logsReadAtMs)
    limit = ctx.settings.output_excerpt_bytes * 4
    newest_first = sorted(
        (
            info
            for info in ctx.storage.list(LOGS_BUCKET, _log_prefix(request.sessionId))
            if _stamp(info.name) > since_ms
        ),
        key=lambda info: info.name,
        reverse=True,
    )
    # Only the tail is shown: read backwards, by ranges, until each stream has enough.
    tails: dict[str, list[bytes]] = {".stdout": [], ".stderr": []}
    for info in newest_first:
        stream = tails[".stdout" if info.name.endswith(".stdout") else ".stderr"]
        wanted = limit + 1 - sum(len(part) for part in stream)
        if wanted > 0:
            stream.insert(0, ctx.storage.read_tail(LOGS_BUCKET, info.name, info.size, wanted))
    instance.logsReadAtMs = int(time.time() * 1000)
    save_instance(ctx, request.sessionId, instance)
    out, _ = excerpt(b"".join(tails[".stdout"]), limit)
    err, _ = excerpt(b"".join(tails[".stderr"]), limit)
    return {"logs": {"stdout": out, "stderr": err}}


def _stamp(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].split("-", 1)[0])


def clear_logs(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Result:
    removed = ctx.storage.delete_prefix(LOGS_BUCKET, _log_prefix(request.sessionId))
    return {"success": True, "removed": removed}


def get_instance_errors(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Result:
    return {"errors": instance.errors, "hasErrors": bool(instance.errors)}


def clear_instance_errors(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Result:
    cleared = len(instance.errors)
    instance.errors = []
    save_instance(ctx, request.sessionId, instance)
    return {"success": True, "cleared": cleared}
