"""A session's instance record (instances/{sessionId}.json) and its workspace."""

from __future__ import annotations

from pydantic import BaseModel, Field

from functions.context import Context
from functions.workspace import Workspace
from vibesdk_gcp.errors import NotFound
from vibesdk_gcp.names import WORKSPACES_BUCKET

INSTANCES_PREFIX = "instances/"


class Instance(BaseModel):
    instanceId: str
    templateName: str
    projectName: str
    owner: str | None = None
    envVars: dict[str, str] = Field(default_factory=dict)
    commands: dict[str, str | None] = Field(default_factory=dict)  # build, lint, typecheck, outputDir
    # The dependency install: the template's, or its lockfile's (functions/dependencies.py, lockfiles.py).
    install: dict[str, object] | None = None
    source: str = "template"  # what createInstance made it from: "template" or "files"
    initCommand: str | None = None
    webhookUrl: str | None = None
    createdAt: str
    previewToken: str | None = None
    previewUrl: str | None = None
    # Rebuilt after every change of its files (functions/live.py), each build a new version.
    live: bool = False
    previewVersion: int = 0
    # The errors whose runtime_error webhook went out, by hash (functions/webhooks.py): once each.
    notifiedErrors: list[str] = Field(default_factory=list)
    errors: list[dict[str, object]] = Field(default_factory=list)
    logsReadAtMs: int | None = None


def _object(session_id: str) -> str:
    return f"{INSTANCES_PREFIX}{session_id}.json"


def load_instance(ctx: Context, session_id: str) -> Instance | None:
    try:
        return Instance.model_validate_json(ctx.storage.read(WORKSPACES_BUCKET, _object(session_id)))
    except NotFound:
        return None


def save_instance(ctx: Context, session_id: str, instance: Instance) -> None:
    ctx.storage.write(WORKSPACES_BUCKET, _object(session_id), instance.model_dump_json().encode(), "application/json")


def delete_instance(ctx: Context, session_id: str) -> None:
    ctx.storage.delete(WORKSPACES_BUCKET, _object(session_id))


def workspace_of(ctx: Context, session_id: str) -> Workspace:
    return Workspace(ctx.storage, ctx.disk, session_id)
