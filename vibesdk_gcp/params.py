"""Parameters of each sandbox action, with VibSDK's names (DESIGN.md's table)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vibesdk_gcp.errors import InvalidRequest


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(Params):
    pass


class AnyParams(Params):
    model_config = ConfigDict(extra="allow")


class TemplateDetailsParams(Params):
    templateName: str | None = Field(default=None, min_length=1, max_length=100)


class CreateInstanceParams(Params):
    templateName: str | None = Field(default=None, min_length=1, max_length=100)
    projectName: str | None = Field(default=None, max_length=200)
    envVars: dict[str, str] = Field(default_factory=dict)
    initCommand: str | None = None


class FileContents(Params):
    filePath: str = Field(min_length=1, max_length=1024)
    fileContents: str


class WriteFilesParams(Params):
    files: list[FileContents] = Field(min_length=1)
    commitMessage: str | None = None


class GetFilesParams(Params):
    filePaths: list[str] | None = None


class ExecuteCommandsParams(Params):
    commands: list[str] = Field(min_length=1)
    timeout: int | None = Field(default=None, ge=1, le=3600, description="seconds, per command")
    allowNetwork: bool = False


class GetLogsParams(Params):
    onlyRecent: bool = False
    durationSeconds: int | None = Field(default=None, ge=1)


class StaticAnalysisParams(Params):
    lintFiles: list[str] | None = None


PARAMS: dict[str, type[Params]] = {
    "getTemplateDetails": TemplateDetailsParams,
    "createInstance": CreateInstanceParams,
    "listAllInstances": NoParams,
    "getInstanceDetails": NoParams,
    "getInstanceStatus": NoParams,
    "shutdownInstance": NoParams,
    "writeFiles": WriteFilesParams,
    "getFiles": GetFilesParams,
    "executeCommands": ExecuteCommandsParams,
    "getInstanceErrors": NoParams,
    "clearInstanceErrors": NoParams,
    "runStaticAnalysisCode": StaticAnalysisParams,
    "deployInstance": NoParams,
    "getLogs": GetLogsParams,
    "clearLogs": NoParams,
    "deployToCloudflareWorkers": AnyParams,
    "pushToGitHub": AnyParams,
}


def validate_params(action: str, params: dict[str, Any]) -> Params:
    """The action's params as their model; InvalidRequest names the bad field."""
    model = PARAMS.get(action)
    if model is None:
        raise InvalidRequest(f"unknown action {action!r}")
    try:
        return model.model_validate(params)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in ("params", *first["loc"]))
        raise InvalidRequest(f"{where}: {first['msg']}") from None
