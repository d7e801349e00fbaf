"""The Starlette app: thin routes over ControlPlane, JSON errors chosen here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.auth import Authenticator, RateLimiter
from control_plane.keys import KeyStore
from control_plane.models import CreateSession, QueueAction
from control_plane.openapi import openapi_document
from control_plane.service import ControlPlane
from control_plane.wiring import control_plane_from
from vibesdk_gcp import clients, logs
from vibesdk_gcp.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TooLarge,
    TooMany,
    TooSlow,
    Unauthenticated,
    VibsdkError,
)
from vibesdk_gcp.identity import IAP_HEADER
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("control_plane")


class UnsupportedMediaType(VibsdkError):
    """A write whose body is not sent as application/json (415)."""


STATUS_OF: dict[type[VibsdkError], int] = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    TooSlow: 408,
    InvalidRequest: 422,
    TooMany: 429,
    ServiceUnavailable: 503,
    UnsupportedMediaType: 415,
}
# Sent with every answer; previews add a sandbox so a page cannot act as this origin.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cross-Origin-Opener-Policy": "same-origin",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
DASHBOARD_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
STATIC = Path(__file__).resolve().parent / "static"
# Previews keep the CSP sandbox (an opaque origin: a page cannot act as this one) and may be framed
# by the control plane's own pages only, the dashboard among them.
PREVIEW_SANDBOX = "sandbox allow-scripts allow-forms allow-popups"


def preview_framing(settings: Settings) -> tuple[str, dict[str, str]]:
    """The previews' CSP and headers, for where previews are served.

    Served by this origin (the default), `'self'` may frame them. Served from a separate origin
    (VIBESDK_PREVIEW_ORIGIN, the usual practice for user content and the recommended one on
    Google Cloud), only the control plane's origin may.
    """
    # X-Frame-Options cannot name another origin: with a separate one, frame-ancestors alone decides.
    headers = {name: value for name, value in SECURITY_HEADERS.items() if name != "X-Frame-Options"}
    if settings.preview_origin:
        return f"{PREVIEW_SANDBOX}; frame-ancestors {settings.public_url}", headers
    return f"{PREVIEW_SANDBOX}; frame-ancestors 'self'", headers | {"X-Frame-Options": "SAMEORIGIN"}


UNAUTHENTICATED_PER_MINUTE = 60
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def origin_of(scheme: str, host: str) -> str:
    """scheme://host[:port] as a browser writes an Origin (lower case, no default port); "" without a host."""
    if not scheme or not host:
        return ""
    scheme, host = scheme.lower(), host.lower()
    return f"{scheme}://{host.removesuffix(':' + DEFAULT_PORTS.get(scheme, ''))}"


def url_origin(url: str) -> str:
    """The origin of a URL or of an Origin header's value; "" for `null` and other non-URLs."""
    parts = urlsplit(url)
    return origin_of(parts.scheme, parts.netloc)


def carries_body(headers: Headers) -> bool:
    """HTTP/1.1 frames a body by one of these two headers; Content-Length: 0 is no body."""
    return "transfer-encoding" in headers or headers.get("content-length", "0").strip() != "0"


def is_json(content_type: str | None) -> bool:
    """application/json, with parameters (`; charset=utf-8`) or without."""
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def client_address(request: Request) -> str:
    """Who sent it: the address Google's front end appends to X-Forwarded-For, else the peer's."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()
    return request.client.host if request.client else "unknown"


def error_response(
    status: int, error: str, detail: str, field: str | None = None, retry_after: int | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if field:
        body["field"] = field
    if status == 503:
        retry_after = retry_after or 5
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(body, status, headers=headers)


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every response."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.preview_csp, self.preview_headers = preview_framing(settings)
        frames = f" frame-src 'self' {settings.preview_origin};" if settings.preview_origin else ""
        self.dashboard_csp = DASHBOARD_CSP.replace("default-src 'self';", "default-src 'self';" + frames)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        preview = path.startswith("/preview/")
        policy = (
            self.preview_csp
            if preview
            else self.dashboard_csp
            if path == "/dashboard" or path.startswith("/static/")
            else API_CSP
        )
        sent = self.preview_headers if preview else SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in sent.items():
                    headers.setdefault(name, value)
                headers.setdefault("Content-Security-Policy", policy)
                if not preview:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _model(model: type[BaseModel], raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidRequest("body is nested too deeply") from None
    try:
        # JSON escapes can spell lone surrogates, which no store or file can hold.
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidRequest("body holds invalid Unicode (a lone surrogate)") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise _FieldError(field, f"{field}: {first['msg']}") from None


class _FieldError(InvalidRequest):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


Handler = Callable[[Request], Awaitable[Response]]


def create_app(
    settings: Settings | None = None, plane: ControlPlane | None = None, authenticator: Authenticator | None = None
) -> Starlette:
    settings = settings or Settings.from_env()
    plane = plane or control_plane_from(settings)
    authenticator = authenticator or Authenticator(settings, KeyStore(clients.firestore_client(settings)))
    limiter = RateLimiter(settings.requests_per_minute)
    # Requests that fail to authenticate, per client address: each may cost a Firestore read.
    refused = RateLimiter(UNAUTHENTICATED_PER_MINUTE)
    # Origins that may write besides the request's own: this control plane's public URL, CORS's.
    trusted_origins = {url_origin(settings.public_url), *(url_origin(o) for o in settings.cors_origins)}

    def check_write(request: Request) -> None:
        """Refuse cross-site writes: with sign-in by cookie (IAP), a browser sends them signed in.

        A page elsewhere can POST `text/plain` (a form, or fetch without CORS) carrying JSON;
        application/json it can send only after a CORS preflight, which CORSMiddleware grants to
        settings.cors_origins alone. The Origin header (which pages cannot set) refuses the rest,
        `null` (sandboxed pages, previews among them) included. Clients that send no Origin (curl,
        the CLI, server-to-server) are not browsers and carry no cookie for anyone to ride on.
        """
        if request.method not in WRITES:
            return
        origin = request.headers.get("origin")
        if origin is not None:
            # The request's own origin: the Host the browser sent, which no page elsewhere can
            # forge, with the scheme received, or https when TLS ended before us (Cloud Run, a
            # load balancer). The upgrade cannot be forged either: it needs this host's certificate.
            host = request.headers.get("host", "")
            own = {origin_of(request.url.scheme, host), origin_of("https", host)}
            seen = url_origin(origin)
            if not seen or seen not in trusted_origins | own:
                raise Forbidden(
                    f"a write from origin {origin!r} is refused: only this control plane's pages "
                    "and VIBESDK_CORS_ORIGINS may write"
                )
        elif request.headers.get("sec-fetch-site") == "cross-site":
            # Sent by browsers only and never settable by a page: a cross-site write whose Origin
            # was stripped on the way (an extension, a proxy). Spec-following browsers always send
            # an Origin with a write, so this is a backstop, and costs no other client anything.
            raise Forbidden("a cross-site write without an Origin header is refused (Sec-Fetch-Site: cross-site)")
        # A body-less write (DELETE, an empty POST) cannot smuggle a payload: no content type is due.
        if carries_body(request.headers):
            require_json(request)

    def require_json(request: Request) -> None:
        content_type = request.headers.get("content-type")
        if not is_json(content_type):
            sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
            raise UnsupportedMediaType(
                f"a body must be sent as Content-Type: application/json; this one came with {sent}"
            )

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise TooLarge(f"body is {declared} bytes; the limit is {settings.max_body_bytes}")
        chunks, size = [], 0
        try:
            # A body trickled in byte by byte would hold a worker for ever.
            async with asyncio.timeout(settings.body_timeout_seconds):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > settings.max_body_bytes:
                        raise TooLarge(f"body is over the {settings.max_body_bytes}-byte limit")
                    chunks.append(chunk)
        except TimeoutError:
            raise TooSlow(f"the body did not arrive within {settings.body_timeout_seconds} s") from None
        if size:
            # check_write refused a declared body; this holds for one framed otherwise (HTTP/2).
            require_json(request)
        return b"".join(chunks)

    def owner_of(request: Request) -> str:
        return str(request.state.caller.owner)

    def api(handler: Handler) -> Handler:
        """Authenticate, run, and turn our exceptions into JSON errors."""

        async def wrapped(request: Request) -> Response:
            with logs.log_context(traceId=logs.trace_from_headers(request.headers)):
                return await guarded(request)

        async def guarded(request: Request) -> Response:
            try:
                check_write(request)  # before any credential is looked at: a cross-site write is no caller
                client = client_address(request)
                refused.take(client, cost=0)
                try:
                    caller = await run_in_threadpool(
                        authenticator.caller, request.headers.get("authorization"), request.headers.get(IAP_HEADER)
                    )
                except Unauthenticated:
                    with contextlib.suppress(TooMany):
                        refused.take(client)
                    raise
                limiter.take(caller.owner)
                request.state.caller = caller
                return await handler(request)
            except _FieldError as error:
                return error_response(422, "invalid_request", str(error), error.field)
            except VibsdkError as error:
                status = next((code for kind, code in STATUS_OF.items() if isinstance(error, kind)), 500)
                if status == 500:
                    logger.exception("unexpected error")
                retry_after = error.retry_after if isinstance(error, TooMany) else None
                code = "invalid_request" if isinstance(error, InvalidRequest) else type(error).__name__
                return error_response(status, code, str(error), retry_after=retry_after)

        return wrapped

    @api
    async def create_session(request: Request) -> Response:
        payload = _model(CreateSession, await body(request))
        queued = await run_in_threadpool(
            plane.create_session, owner_of(request), payload, egress=request.state.caller.egress
        )
        return JSONResponse(queued.model_dump(), 202, headers={"Location": queued.runUrl})

    @api
    async def list_sessions(request: Request) -> Response:
        sessions = await run_in_threadpool(plane.sessions, owner_of(request))
        return JSONResponse({"sessions": [session.model_dump(mode="json") for session in sessions]})

    @api
    async def list_runs(request: Request) -> Response:
        runs = await run_in_threadpool(plane.runs, owner_of(request), request.path_params["sessionId"])
        return JSONResponse({"runs": [run.model_dump(mode="json") for run in runs]})

    @api
    async def list_templates(request: Request) -> Response:
        return JSONResponse({"templates": await run_in_threadpool(plane.templates)})

    @api
    async def queue_action(request: Request) -> Response:
        payload = _model(QueueAction, await body(request))
        queued = await run_in_threadpool(
            plane.queue_action,
            owner_of(request),
            request.path_params["sessionId"],
            payload,
            egress=request.state.caller.egress,
        )
        return JSONResponse(queued.model_dump(), 202, headers={"Location": queued.runUrl})

    @api
    async def get_session(request: Request) -> Response:
        session = await run_in_threadpool(plane.session, owner_of(request), request.path_params["sessionId"])
        return JSONResponse(session.model_dump(mode="json"))

    @api
    async def get_run(request: Request) -> Response:
        run = await run_in_threadpool(
            plane.run, owner_of(request), request.path_params["sessionId"], request.path_params["runId"]
        )
        return JSONResponse(run.model_dump(mode="json"))

    @api
    async def get_log(request: Request) -> Response:
        data = await run_in_threadpool(
            plane.full_log,
            owner_of(request),
            request.path_params["sessionId"],
            request.query_params.get("name", ""),
            request.query_params.get("stream", "stdout"),
        )
        return Response(data, 200, media_type="text/plain; charset=utf-8")

    @api
    async def get_preview(request: Request) -> Response:
        status, preview = await run_in_threadpool(plane.preview, owner_of(request), request.path_params["sessionId"])
        return JSONResponse(preview.model_dump(mode="json"), status)

    async def preview_file(request: Request) -> Response:
        try:
            data, media_type = await run_in_threadpool(
                plane.preview_file,
                request.path_params["sessionId"],
                request.path_params["token"],
                request.path_params["path"],
            )
        except NotFound:
            return error_response(404, "not_found", "no such preview, or it was shut down")
        except ServiceUnavailable as error:
            return error_response(503, "ServiceUnavailable", str(error))
        # The CSP sandbox gives the page an opaque origin, so its module scripts and stylesheets
        # (`crossorigin`, as Vite writes them) load by CORS; the URL's token is the only key anyway.
        headers = {"Cache-Control": "no-store", "Access-Control-Allow-Origin": "*"}
        return Response(data, media_type=media_type, headers=headers)

    async def dashboard(request: Request) -> Response:
        return FileResponse(STATIC / "dashboard.html")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, "not_found", f"no route for {request.method} {request.url.path}")

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    routes = [
        Route("/api/agent", create_session, methods=["POST"]),
        Route("/api/agent", list_sessions, methods=["GET"]),
        Route("/api/agent/{sessionId}", get_session, methods=["GET"]),
        Route("/api/agent/{sessionId}/actions", queue_action, methods=["POST"]),
        Route("/api/agent/{sessionId}/runs", list_runs, methods=["GET"]),
        Route("/api/agent/{sessionId}/runs/{runId}", get_run, methods=["GET"]),
        Route("/api/agent/{sessionId}/log", get_log, methods=["GET"]),
        Route("/api/templates", list_templates, methods=["GET"]),
        Route("/api/agent/{sessionId}/preview", get_preview, methods=["GET"]),
        Route("/preview/{sessionId}/{token}/{path:path}", preview_file, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    middleware = [Middleware(SecurityHeaders, settings=settings)]
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
    return Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found, 405: method_not_allowed})
