"""The job's dispatch: each action's handler, as vibesdk_gcp/registry.py names it."""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable

from pydantic import ValidationError

from functions.actions.common import Outcome, Result, require_instance
from functions.context import Context
from vibesdk_gcp.errors import ActionFailed, InvalidRequest, NotFound
from vibesdk_gcp.registry import ACTIONS, ActionSpec
from vibesdk_gcp.schemas import SandboxRequest

logger = logging.getLogger("functions.actions")

# (request, params, ctx), and the instance for an action the registry says needs one.
Handler = Callable[..., Result | Outcome]


@functools.cache
def handler_of(spec: ActionSpec) -> Handler:
    module, name = spec.handler.split(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


def perform(request: SandboxRequest, ctx: Context) -> Outcome:
    """Run the action: its result and session changes; every failure a user can cause is ActionFailed."""
    spec = ACTIONS[request.action]
    if spec.asks_network(request.params) and not request.egress:
        # The control plane refuses it too; a message from elsewhere is refused here, before any work.
        raise ActionFailed(f"{spec.name} asks for network, and the caller's key has no egress")
    handler = handler_of(spec)
    try:
        with ctx.session_locks.of(request.sessionId):
            if spec.instance:
                answer = handler(request, request.params, ctx, require_instance(ctx, request.sessionId))
            else:
                answer = handler(request, request.params, ctx)
    except (InvalidRequest, NotFound) as error:
        raise ActionFailed(str(error)) from None
    outcome = answer if isinstance(answer, Outcome) else Outcome(answer)
    try:
        spec.result.model_validate(outcome.result)
    except ValidationError as error:
        # Our defect, but the action's work is done and saved: the run keeps it, and the logs say so.
        logger.error("%s returned a result its model refuses: %s", spec.name, error)
    return outcome
