"""Pure ASGI middleware of the API: trace context, security headers, preview hosts, cross-site write
refusal, who calls.

The app's dependencies are read from `scope["app"].state` (set by create_app), so the route table
and its middleware can be built once, at import.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control_plane.errors import UnsupportedMediaType
from control_plane.keys import Caller
from vibesdk_gcp import logs
from vibesdk_gcp.errors import Forbidden, TooMany, Unauthenticated
from vibesdk_gcp.identity import IAP_HEADER
from vibesdk_gcp.previews import is_preview_host, preview_scheme
from vibesdk_gcp.settings import Settings

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
# Previews keep the CSP sandbox (an opaque origin: a page cannot act as this one) and may be framed
# by the control plane's own pages only, the dashboard among them.
PREVIEW_SANDBOX = "sandbox allow-scripts allow-forms allow-popups"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_PORTS = {"http": "80", "https": "443"}


def preview_framing(settings: Settings) -> tuple[str, dict[str, str]]:
    """The path previews' CSP and headers (VibSDK's tunnelURL).

    Served by this origin (the default), `'self'` may frame them. Served from a separate origin
    (VIBESDK_PREVIEW_ORIGIN, the usual practice for user content and the recommended one on
    Google Cloud), only the control plane's origin may. VIBESDK_PREVIEW_FRAME_ANCESTORS (VibSDK's
    own origin, whose page frames its previews) may as well, either way.
    """
    # X-Frame-Options cannot name another origin: where another may frame, frame-ancestors alone decides.
    headers = {name: value for name, value in SECURITY_HEADERS.items() if name != "X-Frame-Options"}
    others = " ".join(settings.preview_frame_ancestors)
    if settings.preview_origin:
        return f"{PREVIEW_SANDBOX}; frame-ancestors {' '.join(filter(None, [settings.public_url, others]))}", headers
    if others:
        return f"{PREVIEW_SANDBOX}; frame-ancestors 'self' {others}", headers
    return f"{PREVIEW_SANDBOX}; frame-ancestors 'self'", headers | {"X-Frame-Options": "SAMEORIGIN"}


def host_preview_headers(settings: Settings) -> dict[str, str]:
    """The headers of a preview served on its own host: no CSP sandbox (its origin is its isolation,
    and its page keeps localStorage and cookies), framed by the control plane and
    VIBESDK_PREVIEW_FRAME_ANCESTORS alone, never cached (a shut-down preview is gone at once)."""
    ancestors = " ".join(dict.fromkeys([url_origin(settings.public_url), *settings.preview_frame_ancestors]))
    headers = {name: value for name, value in SECURITY_HEADERS.items() if name != "X-Frame-Options"}
    return headers | {"Content-Security-Policy": f"frame-ancestors {ancestors}", "Cache-Control": "no-store"}


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


def require_json(headers: Headers) -> None:
    """application/json, with parameters (`; charset=utf-8`) or without; else 415."""
    content_type = headers.get("content-type")
    if (content_type or "").split(";", 1)[0].strip().lower() != "application/json":
        sent = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
        raise UnsupportedMediaType(f"a body must be sent as Content-Type: application/json; this one came with {sent}")


def client_address(conn: HTTPConnection, proxies: int = 0) -> str:
    """Who sent it: the address Google's front end appends to X-Forwarded-For, else the peer's.

    `proxies`: how many trusted addresses follow the client's. Through the previews' load balancer
    the header ends `<client IP>, <forwarding rule's IP>` (https://cloud.google.com/load-balancing/docs/https#x-forwarded-for_header):
    its last entry is the load balancer's own, the same for every visitor; the one before it is the client's.
    """
    forwarded = conn.headers.get("x-forwarded-for")
    if forwarded:
        entries = [entry.strip() for entry in forwarded.split(",")]
        return entries[max(0, len(entries) - 1 - proxies)]
    return conn.client.host if conn.client else "unknown"


class TraceContext:
    """Every line logged while answering carries the request's trace id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with logs.log_context(traceId=logs.trace_from_headers(Headers(scope=scope))):
            await self.app(scope, receive, send)


class SecurityHeaders:
    """The security headers on every response."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.preview_csp, self.preview_headers = preview_framing(settings)
        # The dashboard frames previews: by path (this origin or VIBESDK_PREVIEW_ORIGIN) or by host.
        sources = [settings.preview_origin or ""]
        if settings.preview_domain:
            sources.append(f"{preview_scheme(settings.preview_domain)}://*.{settings.preview_domain}")
        frames = f" frame-src 'self' {' '.join(filter(None, sources))};" if any(sources) else ""
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


class PreviewHosts:
    """A request whose Host is under VIBESDK_PREVIEW_DOMAIN (or is the domain, or is no host name at
    all) goes to the previews' app alone, its label valid or not: a preview's page never reaches the
    API, the dashboard or anything else here."""

    def __init__(self, app: ASGIApp, domain: str | None, previews: ASGIApp) -> None:
        self.app = app
        self.domain = domain
        self.previews = previews

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = Headers(scope=scope).get("host", "") if scope["type"] in ("http", "websocket") else ""
        if self.domain and is_preview_host(host, self.domain):
            await self.previews(scope, receive, send)
            return
        await self.app(scope, receive, send)


class FixedHeaders:
    """The same headers on every response (those the app set itself win)."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WriteGuard:
    """Refuse cross-site writes: with sign-in by cookie (IAP), a browser sends them signed in.

    A page elsewhere can POST `text/plain` (a form, or fetch without CORS) carrying JSON;
    application/json it can send only after a CORS preflight, which CORSMiddleware grants to
    settings.cors_origins alone. The Origin header (which pages cannot set) refuses the rest,
    `null` (sandboxed pages, previews among them) included. Clients that send no Origin (curl,
    the CLI, server-to-server) are not browsers and carry no cookie for anyone to ride on.
    Runs before any credential is looked at: a cross-site write is no caller.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITES:
            self.check(HTTPConnection(scope))
        await self.app(scope, receive, send)

    @staticmethod
    def check(conn: HTTPConnection) -> None:
        settings: Settings = conn.app.state.settings
        origin = conn.headers.get("origin")
        if origin is not None:
            # Origins that may write besides the request's own: this control plane's public URL, CORS's.
            trusted = {url_origin(settings.public_url), *(url_origin(o) for o in settings.cors_origins)}
            # The request's own origin: the Host the browser sent, which no page elsewhere can
            # forge, with the scheme received, or https when TLS ended before us (Cloud Run, a
            # load balancer). The upgrade cannot be forged either: it needs this host's certificate.
            host = conn.headers.get("host", "")
            own = {origin_of(conn.url.scheme, host), origin_of("https", host)}
            seen = url_origin(origin)
            if not seen or seen not in trusted | own:
                raise Forbidden(
                    f"a write from origin {origin!r} is refused: only this control plane's pages "
                    "and VIBESDK_CORS_ORIGINS may write"
                )
        elif conn.headers.get("sec-fetch-site") == "cross-site":
            # Sent by browsers only and never settable by a page: a cross-site write whose Origin
            # was stripped on the way (an extension, a proxy). Spec-following browsers always send
            # an Origin with a write, so this is a backstop, and costs no other client anything.
            raise Forbidden("a cross-site write without an Origin header is refused (Sec-Fetch-Site: cross-site)")
        # A body-less write (DELETE, an empty POST) cannot smuggle a payload: no content type is due.
        if carries_body(conn.headers):
            require_json(conn.headers)


class CallerUser(BaseUser):
    """The authenticated caller, as `request.user`."""

    def __init__(self, caller: Caller) -> None:
        self.caller = caller

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.caller.owner

    @property
    def identity(self) -> str:
        return self.caller.owner


class CallerBackend(AuthenticationBackend):
    """Who calls, for Starlette's AuthenticationMiddleware, within the owner's and the address's limits.

    It raises this runtime's errors (401, 403, 429, 503), not AuthenticationError: sitting inside
    the /api Mount, the middleware is within the app's exception handlers, which answer them as
    every other error, Retry-After included.
    """

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        state = conn.app.state
        # Requests that fail to authenticate, per client address: each may cost a Firestore read.
        client = client_address(conn)
        state.refused.take(client, cost=0)
        try:
            caller: Caller = await run_in_threadpool(
                state.authenticator.caller, conn.headers.get("authorization"), conn.headers.get(IAP_HEADER)
            )
        except Unauthenticated:
            with contextlib.suppress(TooMany):
                state.refused.take(client)
            raise
        state.limiter.take(caller.owner)
        return AuthCredentials(["authenticated"]), CallerUser(caller)
