"""The job's dispatch: each action's handler, as vibesdk_gcp/registry.py names it."""

from __future__ import annotations

import functools
import importlib
import threading
import weakref
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


class SessionLocks:
    """One action at a time per session in this process: they share the session's working copy.

    (Across processes each has its own copy, and the workspace's generation preconditions decide.)
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()

    def of(self, session_id: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(session_id)
            if lock is None:
                lock = threading.Lock()
                self._locks[session_id] = lock
            return lock


SESSION_LOCKS = SessionLocks()


def perform(request: SandboxRequest, ctx: Context) -> Outcome:
    """Run the action: its result and session changes; every failure a user can cause is ActionFailed."""
    spec = ACTIONS[request.action]
    try:
        with SESSION_LOCKS.of(request.sessionId):
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
