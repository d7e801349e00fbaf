"""Message and document shapes shared by the control plane, the job and the recorder."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_serializer, field_validator

from vibesdk_gcp.names import SCHEMA_VERSION
from vibesdk_gcp.params import Params
from vibesdk_gcp.registry import QueuedActionName, typed_params_as_sent, wire

RunStatus = Literal["queued", "running", "succeeded", "failed"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def params_digest(params: Params) -> str:
    canonical = json.dumps(wire(params), sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


class SandboxRequest(BaseModel):
    """Body of a message on the requests topic: one action on one session."""

    model_config = ConfigDict(extra="ignore")

    sessionId: str
    runId: str
    agentId: str | None = None
    action: QueuedActionName
    templateName: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    projectName: str | None = None
    # The action's params model (vibesdk_gcp/registry.py): the job parses a message once, params included.
    params: SerializeAsAny[Params] = Field(default_factory=dict, validate_default=True)
    issuedAt: datetime
    owner: str
    # Whether the caller's key may reach the egress allow-list. Without it, no code the tenant
    # controls runs with network: dependency installs run with scripts off (functions/actions/common.py).
    egress: bool = False
    schemaVersion: str = SCHEMA_VERSION

    _typed_params = field_validator("params", mode="before")(typed_params_as_sent)

    @field_serializer("params")
    def _params_as_sent(self, params: Params) -> dict[str, Any]:
        return wire(params)

    def attributes(self) -> dict[str, str]:
        return {
            "sessionId": self.sessionId,
            "runId": self.runId,
            "action": self.action,
            "schemaVersion": self.schemaVersion,
        }


class PublishedPreview(BaseModel):
    previewUrl: str
    deployedAt: str
    # Its files are under {session}/{token}/{version}/ (None: straight under the token, an older release's).
    version: int | None = None
    # Rebuilt after every change of its files: its pages reload themselves on a newer version.
    live: bool = False
    # Its app has a Cloudflare Worker backend, which is not run here: /api/* answers 501.
    worker: bool = False


class SessionChanges(BaseModel):
    """What a succeeded action changes on its session, apart from the client's result.

    Only the fields an action sets are changes: shutdownInstance sets both to None, deployInstance
    sets the preview alone and leaves the instance as it is.
    """

    # A newer job's other changes are not this release's to apply: ignored, never the event refused.
    model_config = ConfigDict(extra="ignore")

    instanceId: str | None = None
    preview: PublishedPreview | None = None
    # shutdownInstance's new token: a shut-down preview's URL never serves again (docs/SECURITY.md).
    previewToken: str | None = None

    def fields(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True)


class StatusEvent(BaseModel):
    """Body of a message on the status topic: one transition of one run."""

    model_config = ConfigDict(extra="ignore")

    eventId: str
    sessionId: str
    runId: str
    seq: int = Field(ge=0)
    status: RunStatus
    time: datetime
    deliveryAttempt: int | None = None
    # When the action started: lets a terminal event also record the running transition.
    startedAt: datetime | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    # In their own field, so that a result spilled to Cloud Storage never takes them along.
    session: SessionChanges | None = None

    @field_serializer("session")
    def _only_set_fields(self, session: SessionChanges | None) -> dict[str, Any] | None:
        # A field left unset is no change: it must not travel as a null that clears it.
        return None if session is None else session.fields()

    def attributes(self) -> dict[str, str]:
        return {
            "sessionId": self.sessionId,
            "runId": self.runId,
            "status": self.status,
            "schemaVersion": SCHEMA_VERSION,
        }
