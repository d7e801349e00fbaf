"""Every sandbox action, once: its params, its result, its handler and what it needs.

Everything else derives from this table: the action names the API accepts, the params it validates,
the OpenAPI document, the job's dispatch (DESIGN.md, "Sandbox actions"). tests/test_registry.py
fails when another module lists actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from vibesdk_gcp import params as p
from vibesdk_gcp import results as r
from vibesdk_gcp.errors import InvalidRequest


@dataclass(frozen=True)
class ActionSpec:
    name: str
    summary: str
    params: type[p.Params]
    result: type[r.Result]
    # "module:function" under functions/actions, resolved by the job alone: the control plane's
    # image carries no handler code.
    handler: str
    # Its params may give commands network (allowNetwork): only a caller whose key has egress may ask.
    network: bool = False
    # It acts on the instance createInstance made, and fails saying so when there is none.
    instance: bool = True
    # Queued by the runtime itself (the job, the previews' intake), never by a client: not in the API.
    internal: bool = False

    def asks_network(self, params: p.Params) -> bool:
        return self.network and params.asks_network()


def _spec(
    name: str,
    summary: str,
    params: type[p.Params],
    result: type[r.Result],
    handler: str,
    network: bool = False,
    instance: bool = True,
    internal: bool = False,
) -> ActionSpec:
    return ActionSpec(name, summary, params, result, f"functions.actions.{handler}", network, instance, internal)


ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "getTemplateDetails",
            "A template's files and commands",
            p.TemplateDetailsParams,
            r.TemplateDetailsResult,
            "instance:get_template_details",
            instance=False,
        ),
        _spec(
            "createInstance",
            "Make the session's instance from its template",
            p.CreateInstanceParams,
            r.CreateInstanceResult,
            "instance:create_instance",
            instance=False,
        ),
        _spec(
            "listAllInstances",
            "The caller's instances",
            p.NoParams,
            r.InstancesResult,
            "instance:list_all_instances",
            instance=False,
        ),
        _spec(
            "getInstanceDetails",
            "The instance and its file tree",
            p.NoParams,
            r.InstanceDetailsResult,
            "instance:get_instance_details",
        ),
        _spec(
            "getInstanceStatus",
            "Whether the instance exists and is deployed",
            p.NoParams,
            r.InstanceStatusResult,
            "instance:get_instance_status",
            instance=False,
        ),
        _spec("shutdownInstance", "End the instance", p.NoParams, r.ShutdownResult, "instance:shutdown_instance"),
        _spec("writeFiles", "Write files", p.WriteFilesParams, r.WriteFilesResult, "files:write_files"),
        _spec(
            "getFiles", "Read files (all when none are named)", p.GetFilesParams, r.GetFilesResult, "files:get_files"
        ),
        _spec(
            "executeCommands",
            "Run commands in the sandbox, one after another",
            p.ExecuteCommandsParams,
            r.ExecuteCommandsResult,
            "commands:execute_commands",
            network=True,
        ),
        _spec(
            "getInstanceErrors",
            "Errors the instance's commands reported",
            p.NoParams,
            r.InstanceErrorsResult,
            "commands:get_instance_errors",
        ),
        _spec(
            "clearInstanceErrors",
            "Forget the instance's errors",
            p.NoParams,
            r.ClearedErrorsResult,
            "commands:clear_instance_errors",
        ),
        _spec(
            "runStaticAnalysisCode",
            "Lint and type-check",
            p.StaticAnalysisParams,
            r.StaticAnalysisResult,
            "build:run_static_analysis",
        ),
        _spec("deployInstance", "Build and publish the preview", p.NoParams, r.DeployResult, "build:deploy_instance"),
        _spec("getLogs", "The instance's command output", p.GetLogsParams, r.LogsResult, "commands:get_logs"),
        _spec(
            "clearLogs", "Forget the instance's command output", p.NoParams, r.ClearedLogsResult, "commands:clear_logs"
        ),
        _spec(
            "refreshPreview",
            "Rebuild a live instance's preview and publish it as a new version",
            p.NoParams,
            r.DeployResult,
            "build:refresh_preview",
            internal=True,
        ),
        _spec(
            "reportRuntimeErrors",
            "Record the errors a preview's page reported in the browser",
            p.RuntimeErrorsParams,
            r.ReportedErrorsResult,
            "runtime_errors:report_runtime_errors",
            internal=True,
        ),
        _spec(
            "deployToCloudflareWorkers",
            "Unsupported on this runtime",
            p.AnyParams,
            r.NoResult,
            "common:unsupported",
            instance=False,
        ),
        _spec(
            "pushToGitHub", "Unsupported on this runtime", p.AnyParams, r.NoResult, "common:unsupported", instance=False
        ),
    )
}


# What a client may queue: every action but the runtime's own.
PUBLIC_ACTIONS: dict[str, ActionSpec] = {name: spec for name, spec in ACTIONS.items() if not spec.internal}


def _known_in(actions: dict[str, ActionSpec]) -> Callable[[str], str]:
    def known(name: str) -> str:
        if name not in actions:
            names = ", ".join(actions)
            raise PydanticCustomError(
                "unknown_action", "unknown action {name}; the actions are {known}", {"name": repr(name), "known": names}
            )
        return name

    return known


# An action's name a client sends, checked against the table; its JSON schema lists them.
ActionName = Annotated[
    str, AfterValidator(_known_in(PUBLIC_ACTIONS)), WithJsonSchema({"type": "string", "enum": list(PUBLIC_ACTIONS)})
]
# An action's name in a request message: the runtime's own actions too.
QueuedActionName = Annotated[str, AfterValidator(_known_in(ACTIONS))]


def spec_of(name: str) -> ActionSpec:
    try:
        return ACTIONS[name]
    except KeyError:
        raise InvalidRequest(f"unknown action {name!r}") from None


def typed_params(value: Any, info: ValidationInfo) -> Any:
    """A before-validator for a body's `params` beside its `action`: the action's params model, strictly
    (a JSON value of the declared type only, as the OpenAPI document says)."""
    return _typed(value, info, strict=True)


def typed_params_as_sent(value: Any, info: ValidationInfo) -> Any:
    """The same for a message: laxly, as the previous release's control plane let through ("5" for 5)."""
    return _typed(value, info, strict=False)


def _typed(value: Any, info: ValidationInfo, strict: bool) -> Any:
    if "action" not in info.data:
        return value  # the action itself is invalid: that is the error to report
    model = spec_of(info.data["action"]).params
    return value if isinstance(value, model) else model.model_validate(value, strict=strict)


def wire(model: BaseModel) -> dict[str, Any]:
    """Params as sent: only the fields the caller set, so a message reads as its request did."""
    return model.model_dump(mode="json", exclude_unset=True)
