"""JSON Schemas of the answers VibSDK's RemoteSandboxServiceClient checks and of the webhook events it
takes, written from both versions' worker/services/sandbox/sandboxTypes.ts: upstream cloudflare/vibesdk
(zod 4) and the Google Cloud port arun-qikfox/vibesdk (zod 3).

zod's semantics, exactly: `.optional()` may be absent but never null; `z.number()` is any JSON
number; `z.object` admits (and strips) keys it does not name; `.default()` makes a field optional on
input; `z.union([z.string(), z.date()])` is a string in JSON.
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs

Schema = dict[str, Any]
UPSTREAM, PORT = "upstream", "port"
VERSIONS = (UPSTREAM, PORT)

STRING: Schema = {"type": "string"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """A z.object: the required keys, the optional ones (absent or of their type), any other key."""
    return {"type": "object", "properties": required | (optional or {}), "required": sorted(required)}


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def record(values: Schema) -> Schema:
    return {"type": "object", "additionalProperties": values}


def enum(*values: str) -> Schema:
    return {"type": "string", "enum": list(values)}


FILE_TREE: Schema = {"$ref": "#/$defs/FileTreeNode"}
DEFS: Schema = {
    "FileTreeNode": obj(
        {"path": STRING, "type": enum("file", "directory")}, {"children": array({"$ref": "#/$defs/FileTreeNode"})}
    )
}
TEMPLATE_FILE = obj({"filePath": STRING, "fileContents": STRING})
RUNTIME_ERROR = obj({"timestamp": STRING, "level": NUMBER, "message": STRING, "rawOutput": STRING})
COMMAND_RESULT = obj({"command": STRING, "success": BOOLEAN, "output": STRING}, {"error": STRING, "exitCode": NUMBER})
CODE_ISSUE = obj(
    {"message": STRING, "filePath": STRING, "line": NUMBER, "severity": enum("error", "warning", "info")},
    {"column": NUMBER, "ruleId": STRING, "source": STRING},
)
CODE_ISSUE_RESPONSE = obj(
    {"issues": array(CODE_ISSUE)},
    {
        "summary": obj({"errorCount": NUMBER, "warningCount": NUMBER, "infoCount": NUMBER}),
        "rawOutput": STRING,
    },
)
DESCRIPTION = obj({"selection": STRING, "usage": STRING})
ERROR = {"error": STRING}


def instance_details(version: str) -> Schema:
    required = {
        "runId": STRING,
        "startTime": STRING,
        "uptime": NUMBER,
        "directory": STRING,
        "serviceDirectory": STRING,
    }
    if version == PORT:
        required["templateName"] = STRING
    optional = {
        "previewURL": STRING,
        "tunnelURL": STRING,
        "fileTree": FILE_TREE,
        "runtimeErrors": array(RUNTIME_ERROR),
        "processId": STRING,
    }
    return obj(required, optional)


def template_details(version: str) -> Schema:
    if version == UPSTREAM:
        return obj(
            {
                "name": STRING,
                "description": DESCRIPTION,
                "disabled": BOOLEAN,
                "fileTree": FILE_TREE,
                "allFiles": record(STRING),
                "deps": record(STRING),
                "importantFiles": array(STRING),
                "dontTouchFiles": array(STRING),
                "redactedFiles": array(STRING),
            },
            {
                "language": STRING,
                "frameworks": array(STRING),
                "projectType": enum("app", "workflow", "presentation", "general"),
                "renderMode": enum("sandbox", "browser"),
                "slideDirectory": STRING,
            },
        )
    return obj(
        {
            "name": STRING,
            "description": DESCRIPTION,
            "fileTree": FILE_TREE,
            "files": array(TEMPLATE_FILE),
            "deps": record(STRING),
            "dontTouchFiles": array(STRING),
            "redactedFiles": array(STRING),
        },
        {"language": STRING, "frameworks": array(STRING)},
    )


def answers(version: str) -> dict[str, Schema]:
    """Each answer's schema, by its name in sandboxTypes.ts."""
    preview = {"runId": STRING, "previewURL": STRING, "tunnelURL": STRING}
    return {
        "BootstrapResponse": obj({"success": BOOLEAN}, preview | {"processId": STRING, "message": STRING} | ERROR),
        "GetInstanceResponse": obj({"success": BOOLEAN}, {"instance": instance_details(version)} | ERROR),
        "BootstrapStatusResponse": obj(
            {"success": BOOLEAN, "pending": BOOLEAN, "isHealthy": BOOLEAN},
            {"message": STRING, "previewURL": STRING, "tunnelURL": STRING, "processId": STRING} | ERROR,
        ),
        "ListInstancesResponse": obj(
            {"success": BOOLEAN, "instances": array(instance_details(version)), "count": NUMBER}, ERROR
        ),
        "WriteFilesResponse": obj(
            {"success": BOOLEAN, "results": array(obj({"file": STRING, "success": BOOLEAN}, ERROR))},
            {"message": STRING} | ERROR,
        ),
        "GetFilesResponse": obj(
            {"success": BOOLEAN, "files": array(TEMPLATE_FILE)},
            {"errors": array(obj({"file": STRING, "error": STRING}))} | ERROR,
        ),
        "ExecuteCommandsResponse": obj(
            {"success": BOOLEAN, "results": array(COMMAND_RESULT)}, {"message": STRING} | ERROR
        ),
        "RuntimeErrorResponse": obj({"success": BOOLEAN, "errors": array(RUNTIME_ERROR), "hasErrors": BOOLEAN}, ERROR),
        "ClearErrorsResponse": obj({"success": BOOLEAN}, {"message": STRING} | ERROR),
        "StaticAnalysisResponse": obj(
            {"success": BOOLEAN, "lint": CODE_ISSUE_RESPONSE, "typecheck": CODE_ISSUE_RESPONSE}, ERROR
        ),
        "DeploymentResult": obj(
            {"success": BOOLEAN, "message": STRING},
            {"deployedUrl": STRING, "deploymentId": STRING, "output": STRING} | ERROR,
        ),
        "ShutdownResponse": obj({"success": BOOLEAN}, {"message": STRING} | ERROR),
        "GitHubPushResponse": obj(
            {"success": BOOLEAN},
            {
                "commitSha": STRING,
                "details": obj({}, {"operation": STRING, "exitCode": NUMBER, "stderr": STRING}),
            }
            | ERROR,
        ),
        "GetLogsResponse": obj({"success": BOOLEAN, "logs": obj({"stdout": STRING, "stderr": STRING})}, ERROR),
        "TemplateDetailsResponse": obj({"success": BOOLEAN}, {"templateDetails": template_details(version)} | ERROR),
    }


def webhook_events(version: str) -> dict[str, Schema]:
    """The webhook events the runtime sends, by their names in sandboxTypes.ts (WebhookEventBaseSchema
    extended); z.literal is a const."""
    if version == UPSTREAM:
        instance_info = obj({"instanceId": STRING}, {"serviceDirectory": STRING})
    else:
        instance_info = obj({}, {"templateName": STRING, "serviceDirectory": STRING})
    return {
        "WebhookRuntimeErrorEvent": obj(
            {
                "eventType": {"const": "runtime_error"},
                "instanceId": STRING,
                "timestamp": STRING,
                "payload": obj({"runId": STRING, "error": RUNTIME_ERROR, "instanceInfo": instance_info}),
            },
            {"agentId": STRING},
        )
    }


def problems(version: str, name: str, answer: Any) -> list[str]:
    """What the version's zod schema would refuse in the answer or event (none: it parses)."""
    named = answers(version) | webhook_events(version)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": DEFS} | named[name]
    validator = jsonschema_rs.validator_for(schema)
    return [
        f"{name} ({version}) at {list(error.instance_path)}: {error.message}" for error in validator.iter_errors(answer)
    ]


def assert_valid(name: str, answer: Any, versions: tuple[str, ...] = VERSIONS) -> None:
    found = [problem for version in versions for problem in problems(version, name, answer)]
    assert found == [], found
