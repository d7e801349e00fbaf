"""The OpenAPI 3.1 document, generated from the route table and the action registry's models.

A body with `action` and `params` is documented as one variant per action (vibesdk_gcp/registry.py),
each with that action's params model, so that the document says exactly what the API accepts.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.routing import BaseRoute, compile_path

from control_plane.models import Body, Error, Run, SpilledResult
from control_plane.routing import Doc, Operation, flat_routes
from vibesdk_gcp.registry import ACTIONS, PUBLIC_ACTIONS

REF = "#/components/schemas/{model}"
ERRORS = {
    401: "missing or wrong credentials",
    403: "a valid credential that may not do this, or a write from another origin",
    404: "no such session, run or log",
    408: "the body did not arrive in time",
    413: "body over the size limit",
    415: "a body not sent as Content-Type: application/json",
    422: "invalid body; `field` names the culprit",
    429: "over a per-owner or per-address limit; see Retry-After",
    503: "a Google service is unavailable; retry after Retry-After",
}
BODY_ERRORS = (408, 413, 415, 422)
# Each model's schema reference in the document.
Refs = dict[type[BaseModel], dict[str, str]]
RETRY_AFTER = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}


def accepts_no_params(model: type[BaseModel]) -> bool:
    try:
        model.model_validate({})
    except ValidationError:
        return False
    return True


def action_variants(model: type[Body]) -> dict[str, type[Body]]:
    """`model` once per action: `action` fixed to its name, `params` that action's params model.

    The action's default (CreateSession's createInstance) stays a default of its own variant alone.
    """
    default = model.model_fields["action"].default
    shared: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items() if name not in ("action", "params")
    }
    variants: dict[str, type[Body]] = {}
    for name, spec in PUBLIC_ACTIONS.items():
        # Left out, params are {}: required where the action's model refuses that.
        params = Field(default_factory=spec.params) if accepts_no_params(spec.params) else ...
        tag: Any = Literal[name]  # a Literal of a name known at run time: a type mypy cannot see
        variants[name] = create_model(
            f"{model.__name__}_{name}",
            __base__=Body,
            __doc__=f"{name}: {spec.summary}",
            action=(tag, name if default == name else ...),
            params=(spec.params, params),
            **shared,
        )
    return variants


def union(model: type[Body], variants: dict[str, type[Body]], refs: Refs) -> dict[str, Any]:
    """The variants as one schema: each body matches exactly one of them."""
    schema: dict[str, Any] = {
        "title": model.__name__,
        "description": inspect.getdoc(model),
        "oneOf": [refs[variant] for variant in variants.values()],
    }
    action = model.model_fields["action"]
    if action.is_required():
        mapping = {name: refs[variant]["$ref"] for name, variant in variants.items()}
        schema["discriminator"] = {"propertyName": "action", "mapping": mapping}
    else:
        # OpenAPI's discriminator needs its property in every body: here oneOf alone decides.
        schema["description"] += f" Without `action`, the action is {action.default}."
    return schema


def bounded(parameter: dict[str, Any], maxima: Mapping[str, float]) -> dict[str, Any]:
    """The query parameter, its schema's `maximum` the configured one where there is one."""
    if parameter["in"] != "query" or parameter["name"] not in maxima:
        return parameter
    return parameter | {"schema": parameter["schema"] | {"maximum": maxima[parameter["name"]]}}


def operation(path: str, route: Operation, refs: Refs, maxima: Mapping[str, float]) -> dict[str, Any]:
    doc: Doc = route.doc
    responses: dict[str, Any] = {}
    for status, model in doc.answers.items():
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": refs[model]}},
        }
        if status == 202:
            responses[str(status)]["headers"] = {
                "Location": {"description": "the run's URL", "schema": {"type": "string"}}
            }
    if doc.text:
        responses["200"] = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    if doc.stream:
        responses["200"] = {
            "description": "Server-Sent Events, until the stream's time is up (docs/API.md)",
            "content": {"text/event-stream": {"schema": event_schema(refs[doc.stream])}},
        }
    errors: list[int] = []
    if not doc.public:
        errors += [401, 403, 429, 503]
    if "{" in path:
        errors.append(404)
    if doc.body:
        errors += BODY_ERRORS
    elif any(parameter["in"] == "query" for parameter in doc.query):
        errors.append(422)  # a query parameter out of its schema
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERRORS[status],
            "content": {"application/json": {"schema": refs[Error]}},
        } | ({"headers": RETRY_AFTER} if status in (429, 503) else {})
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in compile_path(path)[2]
    ]
    described: dict[str, Any] = {
        "operationId": route.name,
        "summary": (inspect.getdoc(route.endpoint) or route.name).splitlines()[0],
        "responses": responses,
    }
    if parameters or doc.query:
        described["parameters"] = [*parameters, *(bounded(parameter, maxima) for parameter in doc.query)]
    if doc.body:
        described["requestBody"] = {"required": True, "content": {"application/json": {"schema": refs[doc.body]}}}
    if doc.public:
        described["security"] = []
    return described


def event_schema(data: dict[str, str]) -> dict[str, Any]:
    """One Server-Sent Event whose data is JSON of the `data` schema: OpenAPI 3.1 has a stream's
    `schema` describe each event (https://spec.openapis.org/oas/v3.2.0.html#sequential-media-types)."""
    return {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string"},
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
    }


def links_from(model: type[BaseModel], operations: Sequence[tuple[str, Operation]]) -> dict[str, Any]:
    """OpenAPI links from an answer to each operation whose path parameters its fields give (a
    queued run's session and run, say): clients, and schemathesis's stateful tests, follow them."""
    links = {}
    for path, route in operations:
        names = list(compile_path(path)[2])
        # A client following a link to a stream would wait on it for minutes.
        if names and set(names) <= model.model_fields.keys() and not route.doc.stream:
            parameters = {name: f"$response.body#/{name}" for name in names}
            links[route.name] = {"operationId": route.name, "parameters": parameters}
    return links


def typed_results(run: dict[str, Any], refs: Refs) -> dict[str, Any]:
    """Run's schema, where a succeeded run's result is its action's result model, or where it was spilled."""
    cases = [
        {
            "if": {
                "properties": {"action": {"const": name}, "status": {"const": "succeeded"}},
                "required": ["action", "status"],
            },
            "then": {"properties": {"result": {"anyOf": [refs[spec.result], refs[SpilledResult]]}}},
        }
        for name, spec in ACTIONS.items()
    ]
    return run | {"allOf": cases}


def openapi_document(routes: Sequence[BaseRoute], maxima: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The document; `maxima`: query parameters' bounds that come from the settings, by name."""
    operations = [(path, route) for path, route in flat_routes(routes) if isinstance(route, Operation)]
    # Ordered sets (dicts), so that the document reads the same every time.
    bodies = dict.fromkeys(route.doc.body for _, route in operations if route.doc.body)
    variants = {
        body: action_variants(body) for body in bodies if issubclass(body, Body) and "action" in body.model_fields
    }
    answered: list[type[BaseModel]] = [model for _, route in operations for model in route.doc.answers.values()]
    answered += [route.doc.stream for _, route in operations if route.doc.stream]
    answers: dict[type[BaseModel], None] = dict.fromkeys(
        [*answered, Error, SpilledResult, *(spec.result for spec in ACTIONS.values())]
    )
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((variant, "validation") for group in variants.values() for variant in group.values()),
        *((body, "validation") for body in bodies if body not in variants),
        *((model, "serialization") for model in answers),
    ]
    found, schemas = models_json_schema(wanted, ref_template=REF)
    refs: Refs = {model: dict(found[model, mode]) for model, mode in wanted}
    components = dict(schemas.get("$defs", {}))
    for body, group in variants.items():
        components[body.__name__] = union(body, group, refs)
        refs[body] = {"$ref": REF.format(model=body.__name__)}
    run = refs[Run]["$ref"].rsplit("/", 1)[1]
    components[run] = typed_results(components[run], refs)
    paths: dict[str, dict[str, Any]] = {}
    for path, route in operations:
        paths.setdefault(path, {})[route.method.lower()] = operation(path, route, refs, maxima or {})
    for path, route in operations:
        for status, model in route.doc.answers.items():
            if links := links_from(model, operations):
                paths[path][route.method.lower()]["responses"][str(status)]["links"] = links
    return {
        "openapi": "3.1.0",
        "info": {"title": "VibSDK sandbox control plane", "version": "1.0.0"},
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }
