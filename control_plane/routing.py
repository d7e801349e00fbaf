"""The route table: documented operations, and the table read flat (for Allow and the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, compile_path
from starlette.staticfiles import StaticFiles


def flat_routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    """Each Route with its whole path, those inside Mounts included."""
    for route in routes:
        if isinstance(route, Mount):
            yield from flat_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def allowed_methods(routes: Sequence[BaseRoute], path: str) -> list[str]:
    """The methods some route answers on this path, sorted."""
    methods: set[str] = set()
    for whole, route in flat_routes(routes):
        if route.methods and compile_path(whole)[0].match(path):
            methods |= route.methods
    for mount in routes:
        if isinstance(mount, Mount) and isinstance(mount.app, StaticFiles) and path.startswith(mount.path + "/"):
            methods |= {"GET", "HEAD"}  # what StaticFiles answers
    return sorted(methods)


@dataclass(frozen=True)
class Doc:
    """What the OpenAPI document says of an operation, beyond its path, method and docstring."""

    # Each success status (and any other answered with a body of its own) and its model.
    answers: Mapping[int, type[BaseModel]] = field(default_factory=dict)
    # The model the endpoint validates its JSON body with.
    body: type[BaseModel] | None = None
    # OpenAPI parameter objects of the query.
    query: tuple[dict[str, Any], ...] = ()
    # The 200 answer is text/plain rather than JSON.
    text: bool = False
    # The 200 answer is Server-Sent Events (text/event-stream), each event's data this model; no
    # link leads to it.
    stream: type[BaseModel] | None = None
    # Needs no credential.
    public: bool = False


class Operation(Route):
    """A Route of one method, documented in /openapi.json."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str, doc: Doc) -> None:
        super().__init__(path, endpoint, methods=[method])
        self.method = method
        self.doc = doc
