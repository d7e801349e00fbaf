"""VibSDK's runner answers, made from our sessions, runs and results: pure functions.

The shapes are those of worker/services/sandbox/sandboxTypes.ts in both client versions (upstream
cloudflare/vibesdk and the Google Cloud port arun-qikfox/vibesdk), which validate every answer with
zod: an optional field is left out, never null (zod's `.optional()` refuses null), and a required one
is always there, failures included. tests/vibesdk_schemas.py holds them to both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from control_plane.models import Run, Session
from vibesdk_gcp.names import FILES_TEMPLATE

SEVERITIES = ("error", "warning", "info")
Answer = dict[str, Any]


def present(**fields: Any) -> Answer:
    """The fields that have a value: zod's optional fields are absent, never null."""
    return {key: value for key, value in fields.items() if value is not None}


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def number(value: Any) -> int | float | None:
    """A JSON number (not a bool, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class PreviewUrls:
    """previewURL (what VibSDK shows) and tunnelURL (the path form)."""

    preview: str
    tunnel: str


class InstanceState(StrEnum):
    READY = "ready"  # createInstance succeeded and the instance exists
    PENDING = "pending"  # createInstance is queued or running
    FAILED = "failed"  # createInstance failed
    SHUT_DOWN = "shut_down"  # it was made, and shut down since
    NONE = "none"  # no createInstance run seen: an /api session begun otherwise, or one long shut down


def instance_state(session: Session, create: Run | None) -> InstanceState:
    """Where the session's instance stands, from the session and its createInstance run."""
    if session.instanceId:
        return InstanceState.READY
    if create is None:
        return InstanceState.NONE
    if create.status in ("queued", "running"):
        return InstanceState.PENDING
    return InstanceState.FAILED if create.status == "failed" else InstanceState.SHUT_DOWN


def state_error(state: InstanceState, session_id: str, create: Run | None) -> str:
    """Why the instance is not there, in one sentence."""
    if state is InstanceState.FAILED:
        return f"creating instance {session_id} failed: {(create.error if create else None) or 'no reason given'}"
    if state is InstanceState.SHUT_DOWN:
        return f"instance {session_id} was shut down"
    return f"session {session_id} holds no instance: it was shut down, or never made by createInstance"


def run_error(run: Run) -> str:
    return run.error or f"{run.action} failed without a message (run {run.runId})"


# POST /instances


def bootstrap(session_id: str, urls: PreviewUrls | None) -> Answer:
    """BootstrapResponse, at once: the instance is being made (status says when it is ready)."""
    return present(
        success=True,
        runId=session_id,
        previewURL=urls.preview if urls else None,
        tunnelURL=urls.tunnel if urls else None,
        message=f"instance {session_id} is being created; its status says when it is ready",
    )


# GET /instances/{id}/status, GET /instances/{id}, GET /instances


WORKER_NOTE = (
    "; its Worker backend (worker/) does not run on this runtime: the preview serves its client build,"
    " and /api/* answers 501"
)


def status(session: Session, create: Run | None, urls: PreviewUrls | None) -> Answer:
    """BootstrapStatusResponse: healthy for as long as the instance exists, whatever runs on it."""
    state = instance_state(session, create)
    if state is InstanceState.READY or state is InstanceState.PENDING:
        ready = state is InstanceState.READY
        return present(
            success=True,
            pending=not ready,
            isHealthy=ready,
            message=f"instance {session.sessionId} is {'ready' if ready else 'being created'}"
            + (WORKER_NOTE if (session.preview or {}).get("worker") else ""),
            previewURL=urls.preview if urls else None,
            tunnelURL=urls.tunnel if urls else None,
        )
    return {
        "success": False,
        "pending": False,
        "isHealthy": False,
        "error": state_error(state, session.sessionId, create),
    }


def details(session: Session, urls: PreviewUrls | None, now: datetime, errors: list[Answer] | None = None) -> Answer:
    """InstanceDetails (the port requires templateName; upstream's zod strips it); `errors`, the
    instance's runtime errors when they were read."""
    started = datetime.fromisoformat(session.createdAt)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return present(
        runId=session.sessionId,
        startTime=session.createdAt,
        uptime=max(0.0, round((now - started).total_seconds(), 3)),
        previewURL=urls.preview if urls else None,
        tunnelURL=urls.tunnel if urls else None,
        directory=session.sessionId,
        serviceDirectory=session.sessionId,
        templateName=session.templateName or FILES_TEMPLATE,
        projectName=session.projectName,
        runtimeErrors=errors,
    )


def instance(
    session: Session, create: Run | None, urls: PreviewUrls | None, now: datetime, errors: list[Answer] | None = None
) -> Answer:
    """GetInstanceResponse."""
    state = instance_state(session, create)
    if state is InstanceState.READY or state is InstanceState.PENDING:
        return {"success": True, "instance": details(session, urls, now, errors)}
    return {"success": False, "error": state_error(state, session.sessionId, create)}


def instances(found: Sequence[tuple[Session, PreviewUrls | None]], now: datetime) -> Answer:
    """ListInstancesResponse: the caller's instances that exist."""
    listed = [details(session, urls, now) for session, urls in found if session.instanceId]
    return {"success": True, "instances": listed, "count": len(listed)}


# Answers of runs: `result` is the run's whole result (read back when it was spilled), `{}` for none.


def write_files(run: Run, result: dict[str, Any]) -> Answer:
    """WriteFilesResponse: per file, written or not (a don't-touch file is refused, the rest written)."""
    results = [
        present(file=str(item.get("file", "")), success=item.get("success") is True, error=text(item.get("error")))
        for item in result.get("files") or []
        if isinstance(item, dict)
    ]
    if run.status != "succeeded":
        return {"success": False, "results": results, "error": run_error(run)}
    written = sum(item["success"] for item in results)
    return {"success": True, "message": f"wrote {written} of {len(results)} files", "results": results}


def get_files(run: Run, result: dict[str, Any]) -> Answer:
    """GetFilesResponse: the files, and an error for each that could not be read."""
    if run.status != "succeeded":
        return {"success": False, "files": [], "error": run_error(run)}
    files = [
        {"filePath": str(item.get("filePath", "")), "fileContents": str(item.get("fileContents", ""))}
        for item in result.get("files") or []
        if isinstance(item, dict)
    ]
    errors = [{"file": str(path), "error": "File not found"} for path in result.get("missing") or []]
    errors += [{"file": str(path), "error": "File is not UTF-8 text"} for path in result.get("unreadableNames") or []]
    return present(success=True, files=files, errors=errors or None)


def command_results(result: dict[str, Any]) -> list[Answer]:
    return [
        present(
            command=str(item.get("command", "")),
            success=item.get("success") is True,
            output=text(item.get("output")) or "",
            error=text(item.get("error")) or None,
            exitCode=number(item.get("exitCode")),
        )
        for item in result.get("results") or []
        if isinstance(item, dict)
    ]


def execute_commands(run: Run, result: dict[str, Any], commands: Sequence[str] = ()) -> Answer:
    """ExecuteCommandsResponse. As VibSDK's runner answers, a command that fails is that command's
    `success: false` within a successful answer; here it also ends the run, so the commands after it are
    answered as not run. A run that failed otherwise (no instance, out of time) fails the answer."""
    results = command_results(result)
    if run.status != "succeeded" and not (results and not results[-1]["success"]):
        return {"success": False, "results": results, "error": run_error(run)}
    skipped = [
        {"command": command, "success": False, "output": "", "error": f"not run: {results[-1]['command']!r} failed"}
        for command in commands[len(results) :]
    ]
    succeeded = sum(1 for item in results if item["success"])
    message = f"executed {succeeded}/{len(results) + len(skipped)} commands successfully"
    if skipped:
        message += f"; the {len(skipped)} after the failed one did not run"
    return {"success": True, "results": results + skipped, "message": message}


def runtime_error(item: Any) -> Answer | None:
    """VibSDK's RuntimeError, with whatever else we know of it (file, line) beside."""
    if not isinstance(item, dict):
        return None
    message = text(item.get("message")) or ""
    return {key: value for key, value in item.items() if value is not None} | {
        "timestamp": text(item.get("timestamp")) or "",
        "level": number(item.get("level")) or 50,
        "message": message,
        "rawOutput": text(item.get("rawOutput")) or message,
    }


def errors(run: Run, result: dict[str, Any]) -> Answer:
    """RuntimeErrorResponse."""
    if run.status != "succeeded":
        return {"success": False, "errors": [], "hasErrors": False, "error": run_error(run)}
    found = [error for item in result.get("errors") or [] if (error := runtime_error(item))]
    return {"success": True, "errors": found, "hasErrors": bool(found)}


def clear_errors(run: Run, result: dict[str, Any]) -> Answer:
    """ClearErrorsResponse."""
    if run.status != "succeeded":
        return {"success": False, "error": run_error(run)}
    return {"success": True, "message": f"cleared {number(result.get('cleared')) or 0} errors"}


def code_issue(item: Any) -> Answer | None:
    if not isinstance(item, dict):
        return None
    severity = item.get("severity")
    return present(
        message=text(item.get("message")) or "",
        filePath=text(item.get("filePath")) or "",
        line=number(item.get("line")) or 0,
        column=number(item.get("column")),
        severity=severity if severity in SEVERITIES else "info",
        ruleId=text(item.get("ruleId")),
        source=text(item.get("source")),
    )


def code_issues(part: Any) -> Answer:
    """CodeIssueResponse of one checker (lint or typecheck)."""
    part = mapping(part)
    issues = [issue for item in part.get("issues") or [] if (issue := code_issue(item))]
    counts = {severity: sum(issue["severity"] == severity for issue in issues) for severity in SEVERITIES}
    return present(
        issues=issues,
        summary={"errorCount": counts["error"], "warningCount": counts["warning"], "infoCount": counts["info"]},
        rawOutput=text(part.get("rawOutput")),
    )


def static_analysis(run: Run, result: dict[str, Any]) -> Answer:
    """StaticAnalysisResponse (VibSDK's agent takes an `error` for the analysis failing)."""
    if run.status != "succeeded":
        return {"success": False, "lint": {"issues": []}, "typecheck": {"issues": []}, "error": run_error(run)}
    return {"success": True, "lint": code_issues(result.get("lint")), "typecheck": code_issues(result.get("typecheck"))}


def deployment(run: Run, result: dict[str, Any]) -> Answer:
    """DeploymentResult: the preview published here; a Worker script the app has is not run here."""
    output = text(mapping(result.get("build")).get("output"))
    if run.status != "succeeded":
        return present(success=False, message="the deploy failed", output=output, error=run_error(run))
    url = text(result.get("previewUrl")) or ""
    message = f"published the build at {url}"
    worker = text(result.get("worker"))
    if worker:
        message += (
            f"; {worker} names a Worker script (`main`), which this runtime does not run: "
            "only the static files are served"
        )
    return present(success=True, message=message, deployedUrl=url or None, output=output)


def shutdown(run: Run, result: dict[str, Any]) -> Answer:
    """ShutdownResponse."""
    if run.status != "succeeded":
        return {"success": False, "error": run_error(run)}
    return {"success": True, "message": f"instance {run.sessionId} was shut down"}


def logs(run: Run, result: dict[str, Any]) -> Answer:
    """GetLogsResponse."""
    if run.status != "succeeded":
        return {"success": False, "logs": {"stdout": "", "stderr": ""}, "error": run_error(run)}
    found = mapping(result.get("logs"))
    return {
        "success": True,
        "logs": {"stdout": text(found.get("stdout")) or "", "stderr": text(found.get("stderr")) or ""},
    }


def dependencies(all_files: dict[str, str]) -> dict[str, str]:
    """A template's deps: package.json's dependencies and devDependencies, name -> version."""
    try:
        package = json.loads(all_files.get("package.json", "{}"))
    except json.JSONDecodeError:
        return {}
    if not isinstance(package, dict):
        return {}
    found: dict[str, str] = {}
    for key in ("devDependencies", "dependencies"):
        section = package.get(key)
        if isinstance(section, dict):
            found |= {str(name): str(version) for name, version in section.items()}
    return found


def template_details(run: Run, result: dict[str, Any]) -> Answer:
    """TemplateDetailsResponse, with both versions' fields: upstream's allFiles, importantFiles and
    disabled, the port's files."""
    if run.status != "succeeded":
        return {"success": False, "error": run_error(run)}
    found = mapping(result.get("templateDetails"))
    all_files = {str(path): str(contents) for path, contents in mapping(found.get("allFiles")).items()}
    description = mapping(found.get("description"))
    frameworks = found.get("frameworks")
    details = present(
        name=text(found.get("name")) or "",
        description={
            "selection": text(description.get("selection")) or "",
            "usage": text(description.get("usage")) or "",
        },
        language=text(found.get("language")),
        frameworks=[str(item) for item in frameworks] if isinstance(frameworks, list) else None,
        projectType="app",
        disabled=False,
        fileTree=found.get("fileTree") or {"path": "", "type": "directory", "children": []},
        allFiles=all_files,
        files=[{"filePath": path, "fileContents": contents} for path, contents in all_files.items()],
        deps=dependencies(all_files),
        importantFiles=[str(path) for path in found.get("importantFiles") or []],
        dontTouchFiles=[str(path) for path in found.get("dontTouchFiles") or []],
        redactedFiles=[str(path) for path in found.get("redactedFiles") or []],
    )
    return {"success": True, "templateDetails": details}


# POST /instances/{id}/github/push

GITHUB_PUSH_UNSUPPORTED: Answer = {
    "success": False,
    "error": "pushing to GitHub is not supported by this runtime: export the files with GET /instances/{id}/files",
}
