"""Parameters of each sandbox action, with VibSDK's names (DESIGN.md's table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

MAX_COMMAND_BYTES = 128 * 1024
MAX_NAME_BYTES = 255  # one file name, as Linux allows
MAX_COMMAND_SECONDS = 3600  # one command's timeout, at most
MAX_INSTANCE_FILES = 5000  # files of a createInstance: a template's worth


def _text(value: str) -> str:
    """Text a file or a command line can hold: UTF-8 (no lone surrogates), no NUL byte."""
    if "\0" in value:
        raise ValueError("contains a NUL byte")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate)") from None
    return value


def _command(value: str) -> str:
    if len(_text(value).encode()) > MAX_COMMAND_BYTES:
        raise ValueError(f"is over {MAX_COMMAND_BYTES} bytes")
    return value


def _path(value: str) -> str:
    too_long = [part for part in _text(value).split("/") if len(part.encode()) > MAX_NAME_BYTES]
    if too_long:
        raise ValueError(f"has a name over {MAX_NAME_BYTES} bytes ({too_long[0][:40]}...)")
    return value


@dataclass(frozen=True)
class Documented:
    """The JSON-schema pattern of a rule a validator holds (the validator's message stays the error)."""

    pattern: str

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return handler(schema) | {"pattern": self.pattern}


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# JSON Schema's integer, which 5.0 is too (strict models refuse a float for an int); after the
# bounds in an Annotated, so that the JSON schema keeps them.
INTEGRAL = BeforeValidator(_integral)
# No NUL; a path's names at most MAX_NAME_BYTES characters (the bytes rule, for ASCII names).
TEXT_PATTERN = "^[^\\x00]*$"
PATH_PATTERN = f"^[^/\\x00]{{0,{MAX_NAME_BYTES}}}(/[^/\\x00]{{0,{MAX_NAME_BYTES}}})*$"
Text = Annotated[str, AfterValidator(_text), Documented(TEXT_PATTERN)]
CommandLine = Annotated[str, Field(min_length=1), AfterValidator(_command), Documented(TEXT_PATTERN)]
FilePath = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_path), Documented(PATH_PATTERN)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]
# An http(s) URL with a host, no space or control character (recorded for the instance's webhook).
WEBHOOK_PATTERN = r"^https?://[^/?#\x00-\x20]+([/?#][^\x00-\x20]*)?$"
WebhookUrl = Annotated[str, Field(max_length=2048, pattern=WEBHOOK_PATTERN), AfterValidator(_text)]
# A template's name is part of object names and paths: nothing that could leave them.
TemplateName = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


class Params(BaseModel):
    # Strict: a JSON value of the declared type only (no 0 for false, no "5" for 5), as the OpenAPI
    # document says.
    model_config = ConfigDict(extra="forbid", strict=True)

    def asks_network(self) -> bool:
        """Whether these params ask for the egress allow-list (only a key with egress may)."""
        return False


class NoParams(Params):
    pass


MAX_REPORTED_ERRORS = 10


class BrowserError(Params):
    """One error a preview's page saw (control_plane/static/live.js): window.onerror,
    unhandledrejection or console.error; `source` is the file's path in the preview."""

    kind: Literal["error", "unhandledrejection", "console.error"]
    message: str = Field(min_length=1, max_length=2000)
    source: str | None = Field(default=None, max_length=500)
    line: int | None = Field(default=None, ge=0)
    column: int | None = Field(default=None, ge=0)
    stack: str | None = Field(default=None, max_length=4000)


class RuntimeErrorsParams(Params):
    """reportRuntimeErrors, queued by the control plane from a preview's report, never by a client."""

    errors: list[BrowserError] = Field(min_length=1, max_length=MAX_REPORTED_ERRORS)
    # The preview version the page was showing.
    version: int | None = Field(default=None, ge=0)


class AnyParams(Params):
    model_config = ConfigDict(extra="allow")


class TemplateDetailsParams(Params):
    templateName: TemplateName | None = None


class FileContents(Params):
    filePath: FilePath
    fileContents: Text


class CreateInstanceParams(Params):
    """From a template (templateName, here or the request's), or from `files` (VibSDK's runner
    sends the template's files): with files, templateName only names the instance."""

    templateName: TemplateName | None = None
    projectName: Text | None = Field(default=None, max_length=200)
    # JSON schema: patternProperties alone would admit any other name.
    envVars: dict[EnvName, Text] = Field(default_factory=dict, json_schema_extra={"additionalProperties": False})
    initCommand: CommandLine | None = None
    files: list[FileContents] | None = Field(default=None, min_length=1, max_length=MAX_INSTANCE_FILES)
    webhookUrl: WebhookUrl | None = None

    @field_validator("files", mode="before")
    @classmethod
    def _no_binary_lockfile(cls, files: object) -> object:
        """bun.lockb is binary, and fileContents text (no NUL byte): said before the NUL error."""
        for item in files if isinstance(files, list) else ():
            path = item.get("filePath") if isinstance(item, dict) else None
            if isinstance(path, str) and path.rsplit("/", 1)[-1] == "bun.lockb":
                raise PydanticCustomError(
                    "binary_lockfile", "bun.lockb is binary; send bun.lock (bun 1.2+'s text lockfile)"
                )
        return files


class WriteFilesParams(Params):
    files: list[FileContents] = Field(min_length=1)
    commitMessage: Text | None = None


class GetFilesParams(Params):
    filePaths: list[FilePath] | None = None


class ExecuteCommandsParams(Params):
    commands: list[CommandLine] = Field(min_length=1)
    timeout: Annotated[int, Field(ge=1, le=MAX_COMMAND_SECONDS), INTEGRAL] | None = Field(
        default=None, description="seconds, per command"
    )
    allowNetwork: bool = False

    def asks_network(self) -> bool:
        return self.allowNetwork


class GetLogsParams(Params):
    onlyRecent: bool = False
    durationSeconds: Annotated[int, Field(ge=1), INTEGRAL] | None = None


class StaticAnalysisParams(Params):
    lintFiles: list[FilePath] | None = None
