"""The OpenAPI 3.1 document, generated from the pydantic models the routes use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from control_plane.models import CreateSession, Error, Preview, QueueAction, Queued, Run, Session

MODELS: tuple[type[BaseModel], ...] = (CreateSession, QueueAction, Queued, Run, Session, Preview, Error)
REF = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        401: "missing or wrong credentials",
        403: "a valid credential that may not do this, or a write from another origin",
        429: "over a per-owner limit; see Retry-After",
        404: "no such session or run",
        409: "the instance failed",
        413: "body over the size limit",
        415: "a body not sent as Content-Type: application/json",
        422: "invalid body; `field` names the culprit",
        503: "a Google service is unavailable; retry",
    }
    return {str(code): _json(Error, text[code]) for code in codes}


def _listing(summary: str, errors: tuple[int, ...]) -> dict[str, Any]:
    ok = {"description": summary, "content": {"application/json": {"schema": {"type": "object"}}}}
    return {"summary": summary, "responses": {"200": ok, **_errors(*errors)}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema([(m, "validation") for m in MODELS], ref_template=REF)
    session = [_path_param("sessionId")]
    return {
        "openapi": "3.1.0",
        "info": {"title": "VibSDK sandbox control plane", "version": "1.0.0"},
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/templates": {"get": _listing("The template catalog", (401, 503))},
            "/api/agent/{sessionId}/runs": {
                "get": _listing("The session's runs, newest first", (401, 404, 503)) | {"parameters": session}
            },
            "/api/agent": {
                "get": _listing("The caller's sessions, newest first", (401, 503)),
                "post": {
                    "summary": "Create a session and queue its first action (createInstance by default)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(CreateSession)}}},
                    "responses": {"202": _json(Queued, "queued"), **_errors(401, 403, 413, 415, 422, 429, 503)},
                },
            },
            "/api/agent/{sessionId}": {
                "get": {
                    "summary": "The session and its latest run",
                    "parameters": session,
                    "responses": {"200": _json(Session, "the session"), **_errors(401, 404, 503)},
                }
            },
            "/api/agent/{sessionId}/actions": {
                "post": {
                    "summary": "Queue one more action on a session",
                    "parameters": session,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(QueueAction)}}},
                    "responses": {"202": _json(Queued, "queued"), **_errors(401, 403, 404, 413, 415, 422, 429, 503)},
                }
            },
            "/api/agent/{sessionId}/runs/{runId}": {
                "get": {
                    "summary": "One run with its transitions",
                    "parameters": [*session, _path_param("runId")],
                    "responses": {"200": _json(Run, "the run"), **_errors(401, 404, 503)},
                }
            },
            "/api/agent/{sessionId}/log": {
                "get": {
                    "summary": "A command's whole output, by the `log` name in its run's result",
                    "parameters": [
                        *session,
                        {"name": "name", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "stream", "in": "query", "schema": {"type": "string", "enum": ["stdout", "stderr"]}},
                    ],
                    "responses": {
                        "200": {"description": "the output", "content": {"text/plain": {"schema": {"type": "string"}}}},
                        **_errors(401, 404, 503),
                    },
                }
            },
            "/api/agent/{sessionId}/preview": {
                "get": {
                    "summary": "Preview details: 200 ready, 202 being created, 409 failed",
                    "parameters": session,
                    "responses": {
                        "200": _json(Preview, "the instance is ready"),
                        "202": _json(Preview, "the instance is being created"),
                        **_errors(401, 404, 409, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
        },
    }
