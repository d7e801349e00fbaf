"""Every error the API answers, as one JSON shape (as text under /runner): the status and code of each,
chosen here once."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from control_plane.routing import allowed_methods
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

logger = logging.getLogger("control_plane")


class UnsupportedMediaType(VibsdkError):
    """A write whose body is not sent as application/json (415)."""


class RunStillGoing(VibsdkError):
    """A run that did not end within what the request waits for it (504): it goes on."""


class NotRunHere(VibsdkError):
    """What a preview's app needs of a runtime this one is not (its Worker backend's /api/*): 501."""


class FieldError(InvalidRequest):
    """A body field pydantic refused: `field` names it (dotted)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def field_error(error: ValidationError) -> FieldError:
    """pydantic's first complaint, naming its field as the client sent it (dotted)."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "body"
    return FieldError(field, f"{field}: {first['msg']}")


# The status and code of each error class (docs/API.md lists the codes); a subclass answers as
# its nearest listed base.
ERRORS: dict[type[VibsdkError], tuple[int, str]] = {
    InvalidRequest: (422, "invalid_request"),
    Unauthenticated: (401, "unauthenticated"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"),
    TooSlow: (408, "request_timeout"),
    Conflict: (409, "conflict"),
    TooLarge: (413, "too_large"),
    UnsupportedMediaType: (415, "unsupported_media_type"),
    TooMany: (429, "too_many_requests"),
    NotRunHere: (501, "not_implemented"),
    ServiceUnavailable: (503, "service_unavailable"),
    RunStillGoing: (504, "gateway_timeout"),
}
INTERNAL = (500, "internal_error")
# A caller may retry a 503 after this many seconds.
RETRY_AFTER_UNAVAILABLE = 5
# VibSDK's runner protocol (control_plane/runner.py): its client reads a failure as text, unparsed,
# into `{success: false, error: <text>}`.
RUNNER_PATH = "/runner"


def error_of(error: VibsdkError) -> tuple[int, str]:
    # No class in ERRORS derives from another, so the first match is the only one.
    return next((answer for kind, answer in ERRORS.items() if isinstance(error, kind)), INTERNAL)


def error_response(
    status: int, code: str, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "detail": detail}
    if field:
        body["field"] = field
    return JSONResponse(body, status, headers=headers)


def for_runner(request: Request) -> bool:
    path = request.url.path
    return path == RUNNER_PATH or path.startswith(RUNNER_PATH + "/")


def sentence(detail: str) -> str:
    """The detail as one line ending in a full stop."""
    line = " ".join(detail.split())
    return line if line.endswith((".", "!", "?")) else line + "."


def answer_error(
    request: Request,
    status: int,
    code: str,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The error in the shape its caller reads: JSON, or under /runner one sentence of text."""
    if for_runner(request):
        return PlainTextResponse(sentence(detail), status, headers=headers)
    return error_response(status, code, detail, field, headers)


async def vibsdk_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VibsdkError), f"registered for VibsdkError, got {exc!r}"
    status, code = error_of(exc)
    if status == 500:
        logger.error("unexpected error", exc_info=exc)
    headers = None
    if isinstance(exc, TooMany):
        headers = {"Retry-After": str(exc.retry_after)}
    elif status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    field = exc.field if isinstance(exc, FieldError) else None
    return answer_error(request, status, code, str(exc), field, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing's 404 and 405 (with its Allow header, RFC 9110), in the same shape."""
    assert isinstance(exc, HTTPException), f"registered for HTTPException, got {exc!r}"
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    if exc.status_code == 404:
        detail = f"no route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        detail = exc.detail
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # The route that refused knows its own methods only; others may share its path.
        headers["Allow"] = ", ".join(allowed_methods(request.app.routes, request.url.path))
    return answer_error(request, exc.status_code, code, detail, headers=headers)
