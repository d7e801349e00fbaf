"""Runs the runtime queues itself on a session (a live preview's rebuild, a page's reported errors):
written and published as a client's are, so the job runs them in the session's order, on any instance."""

from __future__ import annotations

import uuid
from typing import Protocol

from vibesdk_gcp.bus import Bus
from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.params import NoParams, Params
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow


class Origin(Protocol):
    """What a follow-up is made from: its session's document, or a request of the session."""

    @property
    def sessionId(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def agentId(self) -> str | None: ...
    @property
    def templateName(self) -> str | None: ...
    @property
    def projectName(self) -> str | None: ...


def follow_up(origin: Origin, action: str, params: Params | None = None) -> SandboxRequest:
    """The request of an internal action on the session, as its owner's, never with network."""
    return SandboxRequest(
        sessionId=origin.sessionId,
        runId=str(uuid.uuid4()),
        agentId=origin.agentId,
        action=action,
        templateName=origin.templateName,
        projectName=origin.projectName,
        params=params or NoParams(),
        issuedAt=utcnow(),
        owner=origin.owner,
        egress=False,
    )


def queue_follow_up(store: RunStore, bus: Bus, request: SandboxRequest) -> str:
    """Write the run queued, then publish it: the message's id. A run that cannot be published is
    ended failed at once, never left queued for ever."""
    store.queue_run(request, new_session=False)
    try:
        return bus.publish_request(request)
    except ServiceUnavailable as error:
        store.fail_queued(request.sessionId, request.runId, f"not queued: {error}")
        raise
