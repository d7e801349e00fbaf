"""What every endpoint reads of its request: the app's parts, the caller, a body within its limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from control_plane.errors import field_error
from control_plane.keys import Caller
from control_plane.middleware import CallerUser, require_json
from control_plane.service import ControlPlane
from vibesdk_gcp.errors import InvalidRequest, TooLarge, TooSlow
from vibesdk_gcp.settings import Settings

M = TypeVar("M", bound=BaseModel)


def plane_of(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def caller_of(request: Request) -> Caller:
    user = request.user
    assert isinstance(user, CallerUser), "an /api or /runner endpoint runs behind CallerBackend"
    return user.caller


async def read_body(request: Request, limit: int | None = None, json: bool = True) -> bytes:
    """The body, within the size (the settings', or `limit`) and time limits: a body trickled in byte by
    byte would hold a worker for ever. `json`: sent as application/json (else 415)."""
    settings = settings_of(request)
    most = min(limit or settings.max_body_bytes, settings.max_body_bytes)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > most:
        raise TooLarge(f"body is {declared} bytes; the limit is {most}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(settings.body_timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > most:
                    raise TooLarge(f"body is over the {most}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise TooSlow(f"the body did not arrive within {settings.body_timeout_seconds} s") from None
    if size and json:
        # WriteGuard refused a declared body; this holds for one framed otherwise (HTTP/2).
        require_json(request.headers)
    return b"".join(chunks)


async def json_body(request: Request, model: type[M]) -> M:
    raw = await read_body(request)
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
    return validated(model, data)


def validated(model: type[M], data: Any) -> M:
    """The model, or 422 naming the field as the client sent it."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise field_error(error) from None
