"""The Starlette app: thin routes over ControlPlane, JSON errors chosen here."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from control_plane.models import CreateSession, QueueAction
from control_plane.openapi import openapi_document
from control_plane.service import ControlPlane
from control_plane.wiring import control_plane_from
from vibesdk_gcp.errors import Conflict, InvalidRequest, NotFound, ServiceUnavailable, VibsdkError
from vibesdk_gcp.settings import Settings

logger = logging.getLogger("control_plane")

LOCAL_OWNER = "local"
STATUS_OF: dict[type[VibsdkError], int] = {
    InvalidRequest: 422,
    NotFound: 404,
    Conflict: 409,
    ServiceUnavailable: 503,
}


class BodyTooLarge(VibsdkError):
    pass


def error_response(status: int, error: str, detail: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if field:
        body["field"] = field
    headers = {"Retry-After": "5"} if status == 503 else None
    return JSONResponse(body, status, headers=headers)


def _model(model: type[BaseModel], raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRequest(f"body is not valid JSON: {error}") from None
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


def create_app(settings: Settings | None = None, plane: ControlPlane | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    plane = plane or control_plane_from(settings)

    async def body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise BodyTooLarge(f"body is {declared} bytes; the limit is {settings.max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise BodyTooLarge(f"body is over the {settings.max_body_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def owner_of(request: Request) -> str:
        return str(request.state.owner)

    def api(handler: Handler) -> Handler:
        """Authenticate, run, and turn our exceptions into JSON errors."""

        async def wrapped(request: Request) -> Response:
            if settings.api_token:
                supplied = request.headers.get("authorization", "")
                if not hmac.compare_digest(supplied.encode(), f"Bearer {settings.api_token}".encode()):
                    return error_response(401, "unauthenticated", "send Authorization: Bearer <VIBESDK_API_TOKEN>")
            request.state.owner = LOCAL_OWNER
            try:
                return await handler(request)
            except BodyTooLarge as error:
                return error_response(413, "body_too_large", str(error))
            except _FieldError as error:
                return error_response(422, "invalid_request", str(error), error.field)
            except VibsdkError as error:
                status = next((code for kind, code in STATUS_OF.items() if isinstance(error, kind)), 500)
                if status == 500:
                    logger.exception("unexpected error")
                return error_response(status, type(error).__name__, str(error))

        return wrapped

    @api
    async def create_session(request: Request) -> Response:
        payload = _model(CreateSession, await body(request))
        queued = await run_in_threadpool(plane.create_session, owner_of(request), payload)
        return JSONResponse(queued.model_dump(), 202, headers={"Location": queued.runUrl})

    @api
    async def queue_action(request: Request) -> Response:
        payload = _model(QueueAction, await body(request))
        queued = await run_in_threadpool(
            plane.queue_action, owner_of(request), request.path_params["sessionId"], payload
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
        return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})

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
        Route("/api/agent/{sessionId}", get_session, methods=["GET"]),
        Route("/api/agent/{sessionId}/actions", queue_action, methods=["POST"]),
        Route("/api/agent/{sessionId}/runs/{runId}", get_run, methods=["GET"]),
        Route("/api/agent/{sessionId}/preview", get_preview, methods=["GET"]),
        Route("/preview/{sessionId}/{token}/{path:path}", preview_file, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed})
