"""What each sandbox action returns to its client: the `result` of a succeeded run.

Open models (extra fields allowed): they name what a client may rely on, and a handler that leaves
one out fails its own run as a defect (functions/actions/__init__.py) rather than the client later.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Result(BaseModel):
    model_config = ConfigDict(extra="allow")


class NoResult(Result):
    """An action this runtime refuses: it never succeeds, so it never has a result."""


class TemplateDetailsResult(Result):
    templateDetails: dict[str, Any]


class CreateInstanceResult(Result):
    instanceId: str
    templateName: str
    fileTree: dict[str, Any]
    initOutput: str | None = None
    dependencies: dict[str, Any] | None = None


class InstancesResult(Result):
    instances: list[dict[str, Any]]
    count: int


class InstanceDetailsResult(Result):
    instance: dict[str, Any]
    fileTree: dict[str, Any]
    fileCount: int


class InstanceStatusResult(Result):
    instanceId: str
    isHealthy: bool
    status: str
    previewUrl: str | None = None


class ShutdownResult(Result):
    instanceId: str
    shutdown: bool


class WrittenFile(Result):
    file: str
    success: bool


class WriteFilesResult(Result):
    files: list[WrittenFile]
    commitMessage: str | None = None
    uploaded: int


class FileContents(Result):
    filePath: str
    fileContents: str


class GetFilesResult(Result):
    files: list[FileContents]
    missing: list[str]
    links: list[dict[str, str]]
    unreadableNames: list[str] | None = None


class CommandResult(Result):
    command: str
    success: bool
    exitCode: int | None
    output: str
    error: str
    truncated: bool
    durationMs: int
    log: str | None = None


class ExecuteCommandsResult(Result):
    results: list[CommandResult]
    dependencies: dict[str, Any] | None = None


class InstanceErrorsResult(Result):
    errors: list[Any]
    hasErrors: bool


class ClearedErrorsResult(Result):
    success: bool
    cleared: int


class StaticAnalysisResult(Result):
    success: bool
    lint: dict[str, Any]
    typecheck: dict[str, Any]


class DeployResult(Result):
    previewUrl: str
    files: int
    build: dict[str, Any] | None = None


class ReportedErrorsResult(Result):
    recorded: int  # new to the instance's errors (the others it held already)


class LogsResult(Result):
    logs: dict[str, str]


class ClearedLogsResult(Result):
    success: bool
    removed: int
