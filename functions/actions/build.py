"""runStaticAnalysisCode and deployInstance: the template's own lint, type-check and build commands."""

from __future__ import annotations

import mimetypes
import re
import secrets
from typing import Any

from functions.actions.commands import MAX_SCANNED_LINE, excerpt
from functions.actions.common import require_instance, run_in_sandbox
from functions.actions.files import inside
from functions.context import Context
from functions.instances import Instance, save_instance, workspace_of
from functions.sandbox import prepare_workspace
from functions.workspace import Workspace
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.names import PREVIEWS_BUCKET
from vibesdk_gcp.params import Params, StaticAnalysisParams
from vibesdk_gcp.schemas import SandboxRequest, utcnow

Result = dict[str, Any]
MAX_PREVIEW_FILES = 5_000

# "file:line:column: severity: message (rule)", what the templates' checkers print (eslint's unix format).
ISSUE_LINE = re.compile(
    r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?P<column>\d+):\s*(?P<severity>error|warning|info)\s*:?\s*"
    r"(?P<message>.*?)(?:\s+\((?P<rule>[\w/@.-]+)\))?$"
)
# tsc's "file(line,col): error TS1234: message".
TSC_LINE = re.compile(
    r"^(?P<file>[^(\s]+)\((?P<line>\d+),(?P<column>\d+)\):\s*(?P<severity>error|warning)\s+(?P<rule>TS\d+):\s*(?P<message>.*)$"
)


def parse_issues(output: str) -> list[dict[str, Any]]:
    issues = []
    for line in output.splitlines():
        if len(line) > MAX_SCANNED_LINE:
            continue
        match = ISSUE_LINE.match(line.strip()) or TSC_LINE.match(line.strip())
        if match:
            fields = match.groupdict()
            issues.append(
                {
                    "file": fields["file"],
                    "line": int(fields["line"]),
                    "column": int(fields["column"]),
                    "message": fields["message"],
                    "severity": fields["severity"],
                    "rule": fields.get("rule"),
                }
            )
    return issues


def _check(ctx: Context, instance: Instance, workspace: Workspace, kind: str, files: list[str] | None) -> Result:
    command = instance.commands.get(kind)
    if not command:
        return {
            "issues": [],
            "summary": {"errorCount": 0, "warningCount": 0},
            "skipped": f"the template has no {kind} command",
        }
    if files:
        command = f"{command} -- " + " ".join(
            _quote(inside(workspace.path, f).relative_to(workspace.path).as_posix()) for f in files
        )
    outcome = run_in_sandbox(ctx, str(command), workspace.path, instance.envVars)
    output = outcome.stdout.decode(errors="replace") + "\n" + outcome.stderr.decode(errors="replace")
    issues = parse_issues(output)
    if outcome.killed_reason or (outcome.exit_code != 0 and not issues):
        # The checker itself broke: that is no analysis, and must not pass for a clean one.
        reason = outcome.killed_reason or f"exited with code {outcome.exit_code}"
        raise ActionFailed(f"{kind} command {command!r} {reason}: {excerpt(outcome.stderr, 1000)[0].strip()}")
    return {
        "issues": issues,
        "summary": {
            "errorCount": sum(1 for i in issues if i["severity"] == "error"),
            "warningCount": sum(1 for i in issues if i["severity"] == "warning"),
        },
        "exitCode": outcome.exit_code,
    }


def _quote(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


def run_static_analysis(request: SandboxRequest, params: StaticAnalysisParams, ctx: Context) -> Result:
    instance = require_instance(ctx, request.sessionId)
    workspace = workspace_of(ctx, request.sessionId)
    workspace.restore()
    prepare_workspace(workspace.path)
    lint = _check(ctx, instance, workspace, "lint", params.lintFiles)
    typecheck = _check(ctx, instance, workspace, "typecheck", None)
    found = [
        dict(issue, source=kind)
        for kind, part in (("lint", lint), ("typecheck", typecheck))
        for issue in part["issues"]
    ]
    if found:
        instance.errors = (instance.errors + [i for i in found if i["severity"] == "error"])[-100:]
        save_instance(ctx, request.sessionId, instance)
    return {"success": True, "lint": lint, "typecheck": typecheck}


def deploy_instance(request: SandboxRequest, params: Params, ctx: Context) -> Result:
    instance = require_instance(ctx, request.sessionId)
    build = instance.commands.get("build")
    output_dir = str(instance.commands.get("outputDir") or ".")
    workspace = workspace_of(ctx, request.sessionId)
    workspace.restore()
    prepare_workspace(workspace.path)
    build_result = None
    if build:
        outcome = run_in_sandbox(ctx, str(build), workspace.path, instance.envVars)
        workspace.save()
        output, _ = excerpt(outcome.stdout, ctx.settings.output_excerpt_bytes)
        errors, _ = excerpt(outcome.stderr, ctx.settings.output_excerpt_bytes)
        build_result = {"command": build, "exitCode": outcome.exit_code, "output": output, "error": errors}
        if outcome.exit_code != 0 or outcome.killed_reason:
            reason = outcome.killed_reason or f"exited with code {outcome.exit_code}"
            raise ActionFailed(f"build {build!r} {reason}: {errors[-1000:].strip()}", {"build": build_result})
    site = inside(workspace.path, output_dir) if output_dir != "." else workspace.path
    files = sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink()) if site.is_dir() else []
    if not files:
        raise ActionFailed(f"the build left nothing in {output_dir}/ to publish", {"build": build_result})
    if len(files) > MAX_PREVIEW_FILES:
        raise ActionFailed(f"{output_dir}/ holds {len(files)} files, over the {MAX_PREVIEW_FILES} a preview may have")

    token = instance.previewToken or secrets.token_urlsafe(24)
    prefix = f"{request.sessionId}/{token}/"
    ctx.storage.delete_prefix(PREVIEWS_BUCKET, prefix)
    for path in files:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        ctx.storage.write(PREVIEWS_BUCKET, prefix + path.relative_to(site).as_posix(), path.read_bytes(), content_type)
    preview_url = f"{ctx.settings.preview_origin or ctx.settings.public_url}/preview/{request.sessionId}/{token}/"
    instance.previewToken, instance.previewUrl = token, preview_url
    save_instance(ctx, request.sessionId, instance)
    deployed_at = utcnow().isoformat()
    return {
        "previewUrl": preview_url,
        "files": len(files),
        "build": build_result,
        "session": {"preview": {"previewUrl": preview_url, "deployedAt": deployed_at}},
    }
