"""The Starlette app: thin endpoints over ControlPlane, the route table, and the app made from them."""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from control_plane.auth import Authenticator, RateLimiter
from control_plane.errors import INTERNAL, FieldError, answer_error, http_error, vibsdk_error
from control_plane.keys import KeyStore
from control_plane.live import (
    LIVE_FOLDER,
    LIVE_SECONDS,
    MAX_INJECTED_BYTES,
    MAX_REPORT_BYTES,
    SCRIPT,
    inject,
    report_of,
)
from control_plane.middleware import (
    API_CSP,
    SECURITY_HEADERS,
    CallerBackend,
    FixedHeaders,
    PreviewHosts,
    SecurityHeaders,
    TraceContext,
    WriteGuard,
    client_address,
    host_preview_headers,
)
from control_plane.models import (
    CreateSession,
    Health,
    Preview,
    PreviewState,
    QueueAction,
    Queued,
    Run,
    RunList,
    Session,
    SessionList,
    TemplateList,
    TransitionEvent,
)
from control_plane.openapi import openapi_document
from control_plane.request_parts import caller_of, json_body, plane_of, read_body, settings_of
from control_plane.routing import Doc, Operation
from control_plane.runner import RUNNER
from control_plane.service import ControlPlane, PreviewFile
from control_plane.sse import EventStream
from control_plane.wiring import control_plane_from
from vibesdk_gcp import clients
from vibesdk_gcp.errors import NotFound, TooMany, VibsdkError
from vibesdk_gcp.previews import host_label, parse_label
from vibesdk_gcp.settings import Settings

STATIC = Path(__file__).resolve().parent / "static"
# A live preview's pages may report this many batches of errors a minute, whoever opened them.
REPORTS_PER_MINUTE = 10
PREVIEW_STATUS = {PreviewState.READY: 200, PreviewState.CREATING: 202, PreviewState.FAILED: 409}
# JSON's number, as the OpenAPI document's `number` means it (Python's float() takes "1_0", " 5", "nan").
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
# An events stream ends well before Cloud Run's request timeout (600 s, infra/gcp/main.tf) cuts
# it; the client reconnects with Last-Event-ID.
EVENTS_SECONDS = 280.0


def queued_response(queued: Queued) -> Response:
    return JSONResponse(queued.model_dump(), 202, headers={"Location": queued.runUrl})


async def create_session(request: Request) -> Response:
    """Create a session and queue its first action (createInstance by default)"""
    body = await json_body(request, CreateSession)
    caller = caller_of(request)
    queued = await run_in_threadpool(plane_of(request).create_session, caller.owner, body, egress=caller.egress)
    return queued_response(queued)


async def list_sessions(request: Request) -> Response:
    """The caller's sessions, newest first"""
    sessions = await run_in_threadpool(plane_of(request).sessions, caller_of(request).owner)
    return JSONResponse(SessionList(sessions=sessions).model_dump(mode="json"))


async def get_session(request: Request) -> Response:
    """The session and its latest run"""
    session = await run_in_threadpool(
        plane_of(request).session, caller_of(request).owner, request.path_params["sessionId"]
    )
    return JSONResponse(session.model_dump(mode="json"))


async def queue_action(request: Request) -> Response:
    """Queue one more action on a session"""
    body = await json_body(request, QueueAction)
    caller = caller_of(request)
    queued = await run_in_threadpool(
        plane_of(request).queue_action, caller.owner, request.path_params["sessionId"], body, egress=caller.egress
    )
    return queued_response(queued)


async def list_runs(request: Request) -> Response:
    """The session's runs, newest first"""
    runs = await run_in_threadpool(plane_of(request).runs, caller_of(request).owner, request.path_params["sessionId"])
    return JSONResponse(RunList(runs=runs).model_dump(mode="json"))


def wait_of(request: Request) -> float:
    """The `wait` query parameter: seconds from 0 to the settings' most; absent, 0."""
    if "wait" not in request.query_params:
        return 0.0
    raw = request.query_params["wait"]
    most = settings_of(request).max_wait_seconds
    if not NUMBER.fullmatch(raw) or not 0 <= float(raw) <= most:
        raise FieldError("wait", f"wait must be a number of seconds from 0 to {most:g}, got {raw!r}")
    return float(raw)


async def get_run(request: Request) -> Response:
    """One run with its transitions; with `wait`, as soon as it has ended (or when `wait` s pass)"""
    seconds = wait_of(request)
    run = await plane_of(request).run_when_terminal(
        caller_of(request).owner, request.path_params["sessionId"], request.path_params["runId"], seconds
    )
    return JSONResponse(run.model_dump(mode="json"))


async def get_events(request: Request) -> Response:
    """The session's run transitions as Server-Sent Events, those already there first"""
    # Entered here, before the response: a refusal is a 429 or 503, not an empty 200 after the headers.
    feed = await plane_of(request).transition_feed(
        caller_of(request).owner, request.path_params["sessionId"], request.headers.get("last-event-id")
    )
    # no-transform and X-Accel-Buffering: proxies pass each event on at once rather than buffer it.
    headers = {"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"}
    return EventStream(feed, EVENTS_SECONDS, headers)


async def get_log(request: Request) -> Response:
    """A command's whole output, by the `log` name in its run's result"""
    data = await run_in_threadpool(
        plane_of(request).full_log,
        caller_of(request).owner,
        request.path_params["sessionId"],
        request.query_params.get("name", ""),
        request.query_params.get("stream", "stdout"),
    )
    return Response(data, 200, media_type="text/plain; charset=utf-8")


async def get_preview(request: Request) -> Response:
    """Preview details: 200 ready, 202 being created, 409 failed"""
    preview = await run_in_threadpool(
        plane_of(request).preview, caller_of(request).owner, request.path_params["sessionId"]
    )
    return JSONResponse(preview.model_dump(mode="json"), PREVIEW_STATUS[preview.state])


async def list_templates(request: Request) -> Response:
    """The template catalog"""
    templates = await run_in_threadpool(plane_of(request).templates)
    return JSONResponse(TemplateList(templates=templates).model_dump(mode="json"))


@contextlib.contextmanager
def charged_misses(request: Request, client: str) -> Iterator[None]:
    """Around a read of a preview, no credential asked: a miss is charged to the client's address, so a
    scan of labels or tokens is throttled like a scan of keys. Its own bucket, never the sign-ins'
    (CallerBackend): any web page can make its visitors' browsers miss previews, and must not lock
    them out of the API."""
    refused: RateLimiter = request.app.state.preview_misses
    refused.take(client, cost=0)
    try:
        yield
    except NotFound:
        with contextlib.suppress(TooMany):
            refused.take(client)
        raise NotFound("no such preview, or it was shut down") from None


@dataclass(frozen=True)
class PreviewRequest:
    """Which preview a request is for, by either form, and where its files start in the URL."""

    session_id: str
    token: str
    base: str  # "/" on its own host, "/preview/{session}/{token}/" by path
    client: str

    @classmethod
    def of(cls, request: Request) -> PreviewRequest:
        params = request.path_params
        if "token" in params:
            base = f"/preview/{params['sessionId']}/{params['token']}/"
            return cls(params["sessionId"], params["token"], base, client_address(request))
        # On its own host it came through the previews' load balancer: the client's address is the one before its own.
        settings = settings_of(request)
        label = host_label(request.headers.get("host", ""), settings.preview_domain or "") or ""
        named = parse_label(label) or ("", "")
        return cls(*named, "/", client_address(request, proxies=1))

    @property
    def by_path(self) -> bool:
        return self.base != "/"


async def preview_file(request: Request) -> Response:
    """A preview's file, by either form: the URL's token is the only key, so no credential is asked."""
    preview = PreviewRequest.of(request)
    with charged_misses(request, preview.client):
        file = await run_in_threadpool(
            plane_of(request).preview_file, preview.session_id, preview.token, request.path_params["path"]
        )
    # By path, the CSP sandbox gives the page an opaque origin, so its module scripts and stylesheets
    # (`crossorigin`, as Vite writes them) load by CORS; the URL's token is the only key anyway.
    headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"} if preview.by_path else {}
    if file.live_version is not None and file.size <= MAX_INJECTED_BYTES and request.method != "HEAD":
        page = await run_in_threadpool(lambda: inject(b"".join(file.chunks), preview.base, file.live_version or 0))
        return Response(page, media_type=file.media_type, headers=headers)
    return await file_response(request, file, headers)


async def file_response(request: Request, file: PreviewFile, headers: dict[str, str] | None = None) -> Response:
    """A preview's file, sent as it is read from Cloud Storage; HEAD reads none of it. Its first chunk is
    read before the answer, so that a file gone or a store out of reach meanwhile is a 404 or a 503."""
    chunks: Iterator[bytes] = iter(())
    if request.method != "HEAD":
        first = await run_in_threadpool(next, file.chunks, b"")
        chunks = _ended_on_failure(itertools.chain([first], file.chunks), request.url.path)
    headers = (headers or {}) | {"Content-Length": str(file.size)}
    return StreamingResponse(chunks, media_type=file.media_type, headers=headers)


def _ended_on_failure(chunks: Iterator[bytes], path: str) -> Iterator[bytes]:
    """The chunks, up to a read that fails once the answer has begun: the body ends short of its
    Content-Length (the client sees it cut), and one line says why."""
    try:
        yield from chunks
    except VibsdkError as error:
        logging.getLogger("control_plane").warning("preview file %s cut short: %s", path, error)


async def live_script(request: Request) -> Response:
    """The reload script of a live preview's pages (control_plane/live.py)."""
    headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=headers)


async def live_events(request: Request) -> Response:
    """A live preview's versions as they are published, for its pages' reload script."""
    preview = PreviewRequest.of(request)
    with charged_misses(request, preview.client):
        feed = await plane_of(request).live_versions(preview.session_id, preview.token)
    # A sandboxed page (the path form) has an opaque origin: EventSource asks by CORS.
    headers = {"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no", "Access-Control-Allow-Origin": "*"}
    return EventStream(feed, LIVE_SECONDS, headers)


async def live_errors(request: Request) -> Response:
    """A live preview's page reports the browser's errors: bounded in size, and in rate per preview."""
    preview = PreviewRequest.of(request)
    # text/plain: the page sends a simple request, which a sandboxed (opaque-origin) page may send too.
    report = report_of(await read_body(request, MAX_REPORT_BYTES, json=False), preview.base)
    reports: RateLimiter = request.app.state.error_reports
    with charged_misses(request, preview.client):
        await run_in_threadpool(plane_of(request).published_preview, preview.session_id, preview.token)
    reports.take(preview.session_id)
    await run_in_threadpool(plane_of(request).report_errors, preview.session_id, preview.token, report)
    return Response(status_code=202, headers={"Access-Control-Allow-Origin": "*"})


async def dashboard(request: Request) -> Response:
    return FileResponse(STATIC / "dashboard.html")


async def healthz(request: Request) -> Response:
    """Liveness"""
    return JSONResponse(Health().model_dump())


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


LOG_QUERY = (
    {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "stream", "in": "query", "schema": {"type": "string", "enum": ["stdout", "stderr"]}},
)
WAIT_QUERY = (
    {
        "name": "wait",
        "in": "query",
        "description": "answer as soon as the run has ended, or as it stands after this many seconds "
        "(at most VIBESDK_MAX_WAIT_SECONDS; 0 or absent: at once)",
        "schema": {"type": "number", "minimum": 0, "maximum": Settings.max_wait_seconds},  # create_app: the settings'
    },
)
EVENTS_QUERY = (
    {
        "name": "Last-Event-ID",
        "in": "header",
        "description": "the last event's id a client saw: the stream resumes after it",
        "schema": {"type": "string"},
    },
)
# Each request to these is checked for a cross-site write, then authenticated and rate-limited;
# both raise into the app's exception handlers, which wrap this Mount.
API = Mount(
    "/api",
    routes=[
        Operation("/agent", create_session, "POST", Doc({202: Queued}, body=CreateSession)),
        Operation("/agent", list_sessions, "GET", Doc({200: SessionList})),
        Operation("/agent/{sessionId}", get_session, "GET", Doc({200: Session})),
        Operation("/agent/{sessionId}/actions", queue_action, "POST", Doc({202: Queued}, body=QueueAction)),
        Operation("/agent/{sessionId}/runs", list_runs, "GET", Doc({200: RunList})),
        Operation("/agent/{sessionId}/runs/{runId}", get_run, "GET", Doc({200: Run}, query=WAIT_QUERY)),
        Operation("/agent/{sessionId}/events", get_events, "GET", Doc(query=EVENTS_QUERY, stream=TransitionEvent)),
        Operation("/agent/{sessionId}/log", get_log, "GET", Doc(query=LOG_QUERY, text=True)),
        Operation(
            "/agent/{sessionId}/preview", get_preview, "GET", Doc(dict.fromkeys(PREVIEW_STATUS.values(), Preview))
        ),
        Operation("/templates", list_templates, "GET", Doc({200: TemplateList})),
    ],
    middleware=[Middleware(WriteGuard), Middleware(AuthenticationMiddleware, backend=CallerBackend())],
)


def live_routes(base: str) -> list[BaseRoute]:
    """What a live preview's pages reach under their base (control_plane/live.py)."""
    folder = f"{base}{LIVE_FOLDER}"
    return [
        Route(f"{folder}/live.js", live_script, methods=["GET"]),
        Route(f"{folder}/events", live_events, methods=["GET"]),
        Route(f"{folder}/errors", live_errors, methods=["POST"]),
    ]


ROUTES: list[BaseRoute] = [
    API,
    RUNNER,  # VibSDK's runner protocol (control_plane/runner.py)
    *live_routes("/preview/{sessionId}/{token}/"),
    Route("/preview/{sessionId}/{token}/{path:path}", preview_file, methods=["GET"]),
    Operation("/healthz", healthz, "GET", Doc({200: Health}, public=True)),
    Route("/dashboard", dashboard, methods=["GET"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
    Route("/openapi.json", openapi, methods=["GET"]),
]


async def internal_error(request: Request, exc: Exception) -> Response:
    """Any exception we did not mean to raise: logged, and answered in the same shape (Starlette's
    last handler, outside every middleware: the security headers are set here)."""
    logging.getLogger("control_plane").error("unexpected error", exc_info=exc)
    headers = SECURITY_HEADERS | {"Content-Security-Policy": API_CSP, "Cache-Control": "no-store"}
    return answer_error(request, *INTERNAL, "an internal error; it is logged", headers=headers)


EXCEPTION_HANDLERS = {VibsdkError: vibsdk_error, HTTPException: http_error, Exception: internal_error}


def preview_site(settings: Settings, plane: ControlPlane, misses: RateLimiter, reports: RateLimiter) -> Starlette:
    """What a preview's own host answers: its files (GET and HEAD), its live page's script, versions and
    error reports, and nothing else of the control plane."""
    site = Starlette(
        routes=[*live_routes("/"), Route("/{path:path}", preview_file, methods=["GET"])],  # GET answers HEAD too
        middleware=[Middleware(FixedHeaders, headers=host_preview_headers(settings))],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    site.state.settings = settings
    site.state.plane = plane
    site.state.preview_misses = misses  # the control plane's own: a scan costs the same by either door
    site.state.error_reports = reports
    return site


def create_app(
    settings: Settings | None = None, plane: ControlPlane | None = None, authenticator: Authenticator | None = None
) -> Starlette:
    settings = settings or Settings.from_env()
    plane = plane or control_plane_from(settings)
    misses = RateLimiter(settings.unauthenticated_per_minute)
    reports = RateLimiter(REPORTS_PER_MINUTE)
    middleware = [
        Middleware(TraceContext),
        # First of all: a preview's host reaches nothing below (CORS, the API, the dashboard).
        Middleware(
            PreviewHosts, domain=settings.preview_domain, previews=preview_site(settings, plane, misses, reports)
        ),
        Middleware(SecurityHeaders, settings=settings),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=ROUTES,
        middleware=middleware,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.settings = settings
    app.state.plane = plane
    app.state.authenticator = authenticator or Authenticator(settings, KeyStore(clients.firestore_client(settings)))
    app.state.limiter = RateLimiter(settings.requests_per_minute)
    app.state.refused = RateLimiter(settings.unauthenticated_per_minute)
    app.state.preview_misses = misses
    app.state.error_reports = reports
    app.state.openapi = openapi_document(ROUTES, maxima={"wait": settings.max_wait_seconds})
    return app
