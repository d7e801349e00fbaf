"""VibSDK's runner protocol under /runner: what its RemoteSandboxServiceClient calls, over the same runs as /api.

A call that acts queues a run (ControlPlane.queue_action) and answers when Firestore says the run
ended (run_when_terminal: a listener, not a poll), within the action's budget (run_budget); past it,
504, and the run goes on. What the session document says already (status, details, the list, a
rename) is answered without a run. The instance id is the session id. Answers are made in
runner_answers.py; errors are one sentence of text (control_plane/errors.py).
"""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from control_plane import runner_answers as answers
from control_plane.errors import FieldError, RunStillGoing
from control_plane.middleware import CallerBackend, WriteGuard
from control_plane.models import CreateSession, QueueAction, Run, RunnerCommands, RunnerRename, Session
from control_plane.request_parts import caller_of, json_body, plane_of, settings_of, validated
from control_plane.runner_answers import PreviewUrls
from control_plane.service import ControlPlane
from vibesdk_gcp.errors import ServiceUnavailable, TooMany
from vibesdk_gcp.names import FILES_TEMPLATE
from vibesdk_gcp.params import (
    MAX_COMMAND_SECONDS,
    CreateInstanceParams,
    ExecuteCommandsParams,
    GetFilesParams,
    GetLogsParams,
    NoParams,
    Params,
    StaticAnalysisParams,
    WriteFilesParams,
)
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.state import TERMINAL


def commands_budget(settings: Settings, params: ExecuteCommandsParams) -> float:
    """Each command's timeout (or the default), summed: the job ends the action by then."""
    per_command = params.timeout or settings.command_timeout_seconds
    return float(min(per_command * len(params.commands), settings.max_action_seconds))


def run_budget(settings: Settings, params: Params) -> float:
    """How long a call waits for its run: executeCommands' commands, else the job's bound on one action.
    A run may also wait behind its session's earlier ones (the job keeps their order). The control
    plane's Cloud Run request timeout outlasts the longest (tests/test_runner.py)."""
    if isinstance(params, ExecuteCommandsParams):
        return commands_budget(settings, params)
    return float(settings.max_action_seconds)


# GET /instances/{id} waits this long for the instance's runtime errors, then answers without them.
DETAILS_ERRORS_SECONDS = 10.0


def agent_of(request: Request) -> str | None:
    """The agent's own session id (x-session-id), kept as the session's agentId."""
    agent = request.headers.get("x-session-id") or None
    if agent is not None and len(agent) > 200:
        raise FieldError("x-session-id", "x-session-id: at most 200 characters")
    return agent


def urls_of(found: tuple[str, str] | None) -> PreviewUrls | None:
    """previewURL (its own host, when a preview domain is set) and tunnelURL (by path)."""
    return PreviewUrls(*found) if found else None


def answer(body: Any) -> Response:
    return JSONResponse(body)


async def acted(
    request: Request, session_id: str, queued_run: str, action: str, params: Params, budget: float | None = None
) -> tuple[Run, dict[str, Any]]:
    """The run once it ended, and its whole result; 504 past the action's budget (or `budget`)."""
    plane, caller = plane_of(request), caller_of(request)
    budget = budget or run_budget(settings_of(request), params)
    try:
        run = await plane.run_when_terminal(caller.owner, session_id, queued_run, budget)
    except TooMany as error:
        # The run is queued already: a 429 would have VibSDK queue it again.
        raise RunStillGoing(
            f"{action} run {queued_run} is queued, and cannot be waited for now ({error}); it goes on, and "
            f"/api/agent/{session_id}/runs/{queued_run} follows it"
        ) from None
    if run.status not in TERMINAL:
        raise RunStillGoing(
            f"{action} run {queued_run} did not end within {budget:g} s; it goes on, and "
            f"/api/agent/{session_id}/runs/{queued_run} follows it"
        )
    return run, await run_in_threadpool(plane.whole_result, run)


async def act(request: Request, action: str, params: Params, budget: float | None = None) -> tuple[Run, dict[str, Any]]:
    """Queue the action on the request's instance and wait for its run to end."""
    plane, caller = plane_of(request), caller_of(request)
    session_id = request.path_params["id"]
    body = QueueAction(action=action, params=params)
    queued = await run_in_threadpool(plane.queue_action, caller.owner, session_id, body, egress=caller.egress)
    return await acted(request, session_id, queued.runId, action, params, budget)


def instance_view(plane: ControlPlane, owner: str, session_id: str) -> tuple[Session, Run | None, PreviewUrls | None]:
    """The session, its createInstance run when the instance is not there (yet, or any more), its URLs."""
    session, urls = plane.session_and_urls(owner, session_id)
    if session.instanceId:
        return session, None, urls_of(urls)
    if session.action == "createInstance":
        create = session.latestRun
    else:
        # Among the session's latest 100 runs: a runner session's first; past them, shut down long ago.
        create = next((run for run in reversed(plane.runs(owner, session_id)) if run.action == "createInstance"), None)
    if create is not None and create.status == "succeeded":
        # Made: either its instance landed after the session was read, or it was shut down since.
        session = plane.session(owner, session_id)
    return session, create, urls_of(urls)


async def create_instance(request: Request) -> Response:
    """Queue createInstance (upstream sends files, the port a templateName) and answer at once."""
    caller = caller_of(request)
    params = await json_body(request, CreateInstanceParams)
    if not params.templateName and params.files is None:
        raise FieldError("templateName", "templateName or files: one of the two is needed")
    body = CreateSession(
        templateName=params.templateName or FILES_TEMPLATE,
        projectName=params.projectName,
        agentId=agent_of(request),
        action="createInstance",
        params=params,
    )
    plane = plane_of(request)
    queued = await run_in_threadpool(plane.create_session, caller.owner, body, egress=caller.egress)
    urls = await run_in_threadpool(plane.preview_urls, caller.owner, queued.sessionId)
    return answer(answers.bootstrap(queued.sessionId, urls_of(urls)))


def listed(plane: ControlPlane, owner: str) -> list[tuple[Session, PreviewUrls | None]]:
    """The owner's sessions that hold an instance, with their URLs."""
    return [(session, urls_of(urls)) for session, urls in plane.instances(owner)]


async def list_instances(request: Request) -> Response:
    found = await run_in_threadpool(listed, plane_of(request), caller_of(request).owner)
    return answer(answers.instances(found, datetime.now(UTC)))


async def get_instance(request: Request) -> Response:
    """GetInstanceResponse; a ready instance's details carry its runtime errors (a getInstanceErrors run)."""
    session, create, urls = await run_in_threadpool(
        instance_view, plane_of(request), caller_of(request).owner, request.path_params["id"]
    )
    errors = None
    if session.instanceId:
        # The details stand without them: a busy session, a full quota or an outage leaves them out.
        with contextlib.suppress(RunStillGoing, TooMany, ServiceUnavailable):
            run, result = await act(request, "getInstanceErrors", NoParams(), DETAILS_ERRORS_SECONDS)
            errors = answers.errors(run, result).get("errors") if run.status == "succeeded" else None
    return answer(answers.instance(session, create, urls, datetime.now(UTC), errors))


async def instance_status(request: Request) -> Response:
    session, create, urls = await run_in_threadpool(
        instance_view, plane_of(request), caller_of(request).owner, request.path_params["id"]
    )
    return answer(answers.status(session, create, urls))


async def shutdown_instance(request: Request) -> Response:
    return answer(answers.shutdown(*await act(request, "shutdownInstance", NoParams())))


async def write_files(request: Request) -> Response:
    params = await json_body(request, WriteFilesParams)
    return answer(answers.write_files(*await act(request, "writeFiles", params)))


async def get_files(request: Request) -> Response:
    """`?filePaths=` a JSON array of paths (encodeURIComponent'd); none: every file."""
    raw = request.query_params.get("filePaths")
    paths = None
    if raw:
        try:
            paths = json.loads(raw)
        except json.JSONDecodeError:
            raise FieldError("filePaths", "filePaths: not a JSON array of paths") from None
    params = validated(GetFilesParams, {"filePaths": paths} if paths is not None else {})
    return answer(answers.get_files(*await act(request, "getFiles", params)))


async def execute_commands(request: Request) -> Response:
    body = await json_body(request, RunnerCommands)
    seconds = min(MAX_COMMAND_SECONDS, max(1, math.ceil(body.timeout / 1000))) if body.timeout else None  # ms
    # VibSDK's agent installs packages with its commands: they get network when the key has egress.
    params = ExecuteCommandsParams(commands=body.commands, timeout=seconds, allowNetwork=caller_of(request).egress)
    return answer(answers.execute_commands(*await act(request, "executeCommands", params), params.commands))


async def get_errors(request: Request) -> Response:
    return answer(answers.errors(*await act(request, "getInstanceErrors", NoParams())))


async def clear_errors(request: Request) -> Response:
    return answer(answers.clear_errors(*await act(request, "clearInstanceErrors", NoParams())))


async def static_analysis(request: Request) -> Response:
    """`?files=a,b`: the files to lint (comma-joined, not encoded); none: what the template lints."""
    files = [name for name in request.query_params.get("files", "").split(",") if name]
    params = validated(StaticAnalysisParams, {"lintFiles": files} if files else {})
    return answer(answers.static_analysis(*await act(request, "runStaticAnalysisCode", params)))


async def deploy(request: Request) -> Response:
    return answer(answers.deployment(*await act(request, "deployInstance", NoParams())))


async def rename(request: Request) -> Response:
    """VibSDK reads the answer as its boolean (no schema): `true`."""
    body = await json_body(request, RunnerRename)
    await run_in_threadpool(
        plane_of(request).rename, caller_of(request).owner, request.path_params["id"], body.projectName
    )
    return answer(True)


async def get_logs(request: Request) -> Response:
    """`?reset=true`: only what is new since the last read so; `&duration=N`: the last N seconds."""
    query = request.query_params
    fields: dict[str, Any] = {"onlyRecent": query.get("reset") == "true"}
    if query.get("duration"):
        seconds = query["duration"]
        if not seconds.isdigit() or int(seconds) < 1:
            raise FieldError("duration", "duration: not a whole number of seconds above 0")
        fields["durationSeconds"] = int(seconds)
    params = validated(GetLogsParams, fields)
    return answer(answers.logs(*await act(request, "getLogs", params)))


async def template_details(request: Request) -> Response:
    """The port's GET /templates/{name}: getTemplateDetails, a run of a session of its own."""
    caller, plane = caller_of(request), plane_of(request)
    body = validated(
        CreateSession,
        {"templateName": request.path_params["name"], "agentId": agent_of(request), "action": "getTemplateDetails"},
    )
    queued = await run_in_threadpool(plane.create_session, caller.owner, body, egress=caller.egress)
    found = await acted(request, queued.sessionId, queued.runId, "getTemplateDetails", body.params)
    return answer(answers.template_details(*found))


async def github_push(request: Request) -> Response:
    await run_in_threadpool(plane_of(request).session, caller_of(request).owner, request.path_params["id"])
    return answer(answers.GITHUB_PUSH_UNSUPPORTED)


# Checked for a cross-site write, then authenticated and rate-limited, as /api is; not in
# /openapi.json: VibSDK's sandboxTypes.ts is its contract (tests/vibesdk_schemas.py).
RUNNER = Mount(
    "/runner",
    routes=[
        Route("/instances", create_instance, methods=["POST"]),
        Route("/instances", list_instances, methods=["GET"]),
        Route("/instances/{id}", get_instance, methods=["GET"]),
        Route("/instances/{id}", shutdown_instance, methods=["DELETE"]),
        Route("/instances/{id}/status", instance_status, methods=["GET"]),
        Route("/instances/{id}/files", write_files, methods=["POST"]),
        Route("/instances/{id}/files", get_files, methods=["GET"]),
        Route("/instances/{id}/commands", execute_commands, methods=["POST"]),
        Route("/instances/{id}/errors", get_errors, methods=["GET"]),
        Route("/instances/{id}/errors", clear_errors, methods=["DELETE"]),
        Route("/instances/{id}/analysis", static_analysis, methods=["GET"]),
        Route("/instances/{id}/deploy", deploy, methods=["POST"]),
        Route("/instances/{id}/name", rename, methods=["POST"]),
        Route("/instances/{id}/logs", get_logs, methods=["GET"]),
        Route("/instances/{id}/github/push", github_push, methods=["POST"]),
        Route("/templates/{name}", template_details, methods=["GET"]),
    ],
    middleware=[Middleware(WriteGuard), Middleware(AuthenticationMiddleware, backend=CallerBackend())],
)
