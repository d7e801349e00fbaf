"""Sandbox actions by VibSDK name; each takes the request and returns its result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from functions.actions import build, commands, files, instance
from functions.context import Context
from vibesdk_gcp.errors import ActionFailed, InvalidRequest, NotFound, Unsupported
from vibesdk_gcp.params import Params, validate_params
from vibesdk_gcp.schemas import SandboxRequest

Result = dict[str, Any]
Handler = Callable[[SandboxRequest, Any, Context], Result]


def _unsupported(request: SandboxRequest, params: Params, ctx: Context) -> Result:
    raise Unsupported(f"{request.action} is unsupported on this runtime")


HANDLERS: dict[str, Handler] = {
    "getTemplateDetails": instance.get_template_details,
    "createInstance": instance.create_instance,
    "listAllInstances": instance.list_all_instances,
    "getInstanceDetails": instance.get_instance_details,
    "getInstanceStatus": instance.get_instance_status,
    "shutdownInstance": instance.shutdown_instance,
    "writeFiles": files.write_files,
    "getFiles": files.get_files,
    "executeCommands": commands.execute_commands,
    "getLogs": commands.get_logs,
    "clearLogs": commands.clear_logs,
    "runStaticAnalysisCode": build.run_static_analysis,
    "deployInstance": build.deploy_instance,
    "getInstanceErrors": commands.get_instance_errors,
    "clearInstanceErrors": commands.clear_instance_errors,
    "deployToCloudflareWorkers": _unsupported,
    "pushToGitHub": _unsupported,
}


def perform(request: SandboxRequest, ctx: Context) -> Result:
    """Run the action; every failure a user can cause comes out as ActionFailed."""
    try:
        params = validate_params(request.action, request.params)
        with ctx.session_locks.of(request.sessionId):
            return HANDLERS[request.action](request, params, ctx)
    except (InvalidRequest, NotFound) as error:
        raise ActionFailed(str(error)) from None
