"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

from vibesdk_gcp.params import CommandLine, Params, Text
from vibesdk_gcp.registry import ActionName, QueuedActionName, typed_params
from vibesdk_gcp.schemas import RunStatus


class Body(BaseModel):
    # Strict: a JSON value of the declared type only (no 0 for false, no "5" for 5), as the OpenAPI
    # document says.
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateSession(Body):
    """POST /api/agent: a new session and its first run."""

    templateName: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    projectName: str | None = Field(default=None, max_length=200)
    agentId: str | None = Field(default=None, max_length=200)
    action: ActionName = "createInstance"
    # Checked here, once, against the action's params model (vibesdk_gcp/registry.py), and kept typed.
    params: SerializeAsAny[Params] = Field(default_factory=dict, validate_default=True)

    _typed_params = field_validator("params", mode="before")(typed_params)


class QueueAction(Body):
    """POST /api/agent/{sessionId}/actions: one more action on a session."""

    action: ActionName
    params: SerializeAsAny[Params] = Field(default_factory=dict, validate_default=True)

    _typed_params = field_validator("params", mode="before")(typed_params)


class Queued(BaseModel):
    sessionId: str
    runId: str
    action: QueuedActionName
    status: RunStatus
    statusUrl: str
    runUrl: str


class Transition(BaseModel):
    seq: int
    status: RunStatus
    at: str
    eventId: str | None = None
    deliveryAttempt: int | None = None


class TransitionEvent(BaseModel):
    """The data of one `transition` event of GET /api/agent/{sessionId}/events: a run's transition as it
    lands (fetch the run for its result)."""

    runId: str
    action: str  # as stored: a newer release's action reads too
    seq: int
    status: RunStatus
    at: str
    error: str | None = None  # a failed run's, on its terminal transition

    @property
    def event_id(self) -> str:
        return f"{self.runId}:{self.seq}"


class SpilledResult(BaseModel):
    """A succeeded run's result too big for Firestore, kept in Cloud Storage instead (functions/job.py)."""

    resultObject: str
    resultBytes: int
    keys: list[str]


class Run(BaseModel):
    runId: str
    sessionId: str
    action: str  # as stored: a newer release's action reads too
    status: RunStatus
    transitions: list[Transition]
    result: dict[str, Any] | None = None
    error: str | None = None
    createdAt: str
    updatedAt: str


class Session(BaseModel):
    sessionId: str
    templateName: str | None = None
    projectName: str | None = None
    agentId: str | None = None
    status: RunStatus
    action: str  # as stored: a newer release's action reads too
    runId: str
    instanceId: str | None = None
    preview: dict[str, Any] | None = None
    createdAt: str
    updatedAt: str
    latestRun: Run | None = None


class PreviewState(StrEnum):
    READY = "ready"  # the instance exists (previewUrl once deployInstance published it)
    CREATING = "creating"
    FAILED = "failed"  # createInstance failed: `message` says why


class Preview(BaseModel):
    sessionId: str
    instanceId: str | None
    state: PreviewState
    status: RunStatus
    previewUrl: str | None = None
    message: str | None = None


class SessionList(BaseModel):
    sessions: list[Session]


class RunList(BaseModel):
    runs: list[Run]


class TemplateList(BaseModel):
    templates: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Error(BaseModel):
    error: str
    detail: str
    field: str | None = None


# VibSDK's runner protocol (control_plane/runner.py): the bodies whose fields differ from our params'.


class RunnerCommands(Body):
    """POST /runner/instances/{id}/commands: VibSDK's ExecuteCommandsRequest (timeout in milliseconds)."""

    commands: list[CommandLine] = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False, description="milliseconds, per command")


class RunnerRename(Body):
    """POST /runner/instances/{id}/name: VibSDK's updateProjectName."""

    projectName: Text = Field(min_length=1, max_length=200)
