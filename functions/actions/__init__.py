"""The job's dispatch: each action's handler, as vibesdk_gcp/registry.py names it."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from functions.actions.common import Outcome, Result
from functions.context import Context
from vibesdk_gcp.errors import ActionFailed, InvalidRequest, NotFound
from vibesdk_gcp.registry import ACTIONS, ActionSpec
from vibesdk_gcp.schemas import SandboxRequest

Handler = Callable[[SandboxRequest, Any, Context], Result | Outcome]


@functools.cache
def handler_of(spec: ActionSpec) -> Handler:
    module, name = spec.handler.split(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def perform(request: SandboxRequest, ctx: Context) -> Outcome:
    """Run the action: its result and session changes; every failure a user can cause is ActionFailed."""
    spec = ACTIONS[request.action]
    try:
        with ctx.session_locks.of(request.sessionId):
            answer = handler_of(spec)(request, request.params, ctx)
    except (InvalidRequest, NotFound) as error:
        raise ActionFailed(str(error)) from None
    outcome = answer if isinstance(answer, Outcome) else Outcome(answer)
    try:
        # What the client relies on is there: a handler that leaves it out is our defect, caught here.
        spec.result.model_validate(outcome.result)
    except ValidationError as error:
        raise RuntimeError(f"{spec.name} returned a result its model refuses: {error}") from None
    return outcome
