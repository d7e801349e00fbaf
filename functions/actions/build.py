"""runStaticAnalysisCode and deployInstance: the template's own lint, type-check and build commands."""

from __future__ import annotations

import re
from pathlib import Path

from functions.actions.common import (
    Outcome,
    Result,
    excerpt,
    new_install,
    paths_of,
    ready_workspace,
    run_in_sandbox,
)
from functions.actions.files import inside
from functions.actions.runtime_errors import record_errors
from functions.context import Context
from functions.diagnostics import analysis_issues, command_errors, runtime_error, summary
from functions.instances import Instance, save_instance
from functions.workspace import Workspace
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.media import content_type
from vibesdk_gcp.names import PREVIEWS_BUCKET
from vibesdk_gcp.params import Params, StaticAnalysisParams
from vibesdk_gcp.previews import new_token, preview_url
from vibesdk_gcp.schemas import PublishedPreview, SandboxRequest, SessionChanges, utcnow

MAX_PREVIEW_FILES = 5_000
# An app that is a Cloudflare Worker says so in its Wrangler config's `main` (its script): only its
# static build is published here, and deployInstance's result names the config (`worker`).
WRANGLER_CONFIGS = ("wrangler.json", "wrangler.jsonc", "wrangler.toml")
WORKER_MAIN = re.compile(r'^\s*"?main"?\s*[:=]', re.M)


def worker_config(root: Path) -> str | None:
    for name in WRANGLER_CONFIGS:
        path = root / name
        if path.is_file() and not path.is_symlink() and WORKER_MAIN.search(path.read_text(errors="replace")[:65536]):
            return name
    return None


def _check(ctx: Context, instance: Instance, workspace: Workspace, kind: str, files: list[str] | None) -> Result:
    """One of the template's checkers, run in the sandbox, its report read into VibSDK's CodeIssueResponse."""
    command = instance.commands.get(kind)
    if not command:
        return {"issues": [], "summary": summary([]), "rawOutput": "", "skipped": f"the template has no {kind} command"}
    if files:
        command = f"{command} -- " + " ".join(
            _quote(inside(workspace.path, f).relative_to(workspace.path).as_posix()) for f in files
        )
    outcome = run_in_sandbox(ctx, str(command), workspace.path, instance.envVars)
    stdout, stderr = outcome.stdout.decode(errors="replace"), outcome.stderr.decode(errors="replace")
    # Tools that say who they are (ESLint, html-validate, ruff, tsc) are named; other lines go by kind.
    issues = analysis_issues(stdout, stderr, paths_of(ctx, workspace), kind)
    if outcome.killed_reason or (outcome.exit_code != 0 and not issues):
        # The checker itself broke: that is no analysis, and must not pass for a clean one.
        detail = excerpt(outcome.stderr, 1000)[0].strip() or excerpt(outcome.stdout, 1000)[0].strip()
        raise ActionFailed(f"{kind} command {command!r} {outcome.ended}: {detail}")
    raw = f"STDOUT: {excerpt(outcome.stdout, 8000)[0]}\nSTDERR: {excerpt(outcome.stderr, 8000)[0]}"
    return {"issues": issues, "summary": summary(issues), "rawOutput": raw, "exitCode": outcome.exit_code}


def _quote(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


def run_static_analysis(
    request: SandboxRequest, params: StaticAnalysisParams, ctx: Context, instance: Instance
) -> Result:
    workspace = ready_workspace(ctx, request, instance)
    lint = _check(ctx, instance, workspace, "lint", params.lintFiles)
    typecheck = _check(ctx, instance, workspace, "typecheck", None)
    found = [
        runtime_error(
            f"{issue['ruleId'] or kind}: {issue['message']}",
            issue["message"],
            kind,
            issue["filePath"],
            issue["line"],
            issue["column"],
        )
        for kind, part in (("lint", lint), ("typecheck", typecheck))
        for issue in part["issues"]
        if issue["severity"] == "error"
    ]
    record_errors(ctx, request, instance, found)
    return {"success": True, "lint": lint, "typecheck": typecheck}


def _published(path: Path, site: Path) -> bool:
    """A file the preview serves: never installed packages, nor a hidden file (.env, .git, the lists)
    but .well-known's."""
    if not path.is_file() or path.is_symlink():
        return False
    parts = path.relative_to(site).parts
    return not any((part.startswith(".") and part != ".well-known") or part == "node_modules" for part in parts)


def _preview_token(ctx: Context, request: SandboxRequest, instance: Instance) -> str:
    """The instance's token, else the one its session was made with (the URL createInstance gave), else a
    new one: a session made before sessions had tokens."""
    return instance.previewToken or ctx.store.get_session(request.sessionId).previewToken or new_token()


def deploy_instance(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Outcome:
    return _build_and_publish(ctx, request, instance, instance.commands.get("build"))


def refresh_preview(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Outcome:
    """A live instance's rebuild (functions/live.py): its preview build, published as the next version."""
    command = instance.commands.get("preview") or instance.commands.get("build")
    return _build_and_publish(ctx, request, instance, command)


def _build_and_publish(ctx: Context, request: SandboxRequest, instance: Instance, build: str | None) -> Outcome:
    """Build, then publish the output as the preview's next version. A failed build publishes nothing:
    the last good version stays served, and the build's errors become the instance's."""
    workspace = ready_workspace(ctx, request, instance)
    build_result = None
    if build:
        outcome = run_in_sandbox(ctx, str(build), workspace.path, instance.envVars)
        workspace.save()
        output, _ = excerpt(outcome.stdout, ctx.settings.output_excerpt_bytes)
        errors, _ = excerpt(outcome.stderr, ctx.settings.output_excerpt_bytes)
        build_result = {"command": build, "exitCode": outcome.exit_code, "output": output, "error": errors}
        if outcome.exit_code != 0 or outcome.killed_reason:
            found = command_errors(errors + "\n" + output, str(build), paths_of(ctx, workspace))
            record_errors(ctx, request, instance, found)
            build_result["errors"] = found
            summary_line = found[0]["message"] if found else errors[-1000:].strip()
            raise ActionFailed(
                f"build {build!r} {outcome.ended}: {summary_line}\n{errors[-1000:].strip()}", {"build": build_result}
            )
    output_dir = str(instance.commands.get("outputDir") or ".")
    site = inside(workspace.path, output_dir) if output_dir != "." else workspace.path
    worker = worker_config(workspace.path)
    if worker and not (site / "index.html").is_file() and (site / "client" / "index.html").is_file():
        # @cloudflare/vite-plugin builds the Worker into dist/<name>/ and the client into dist/client/.
        site = site / "client"
    files = sorted(p for p in site.rglob("*") if _published(p, site)) if site.is_dir() else []
    if not files:
        raise ActionFailed(f"the build left nothing in {output_dir}/ to publish", {"build": build_result})
    if len(files) > MAX_PREVIEW_FILES:
        raise ActionFailed(f"{output_dir}/ holds {len(files)} files, over the {MAX_PREVIEW_FILES} a preview may have")
    published = _publish(ctx, request, instance, site, files, worker is not None)
    result = {"previewUrl": published.previewUrl, "files": len(files), "build": build_result}
    if published.version is not None:
        result["version"] = published.version
    if worker:
        result["worker"] = worker
    if installed := new_install(workspace):
        result["dependencies"] = installed  # a new lockfile was installed first
    return Outcome(result, SessionChanges(preview=published))


def _publish(
    ctx: Context, request: SandboxRequest, instance: Instance, site: Path, files: list[Path], worker: bool
) -> PublishedPreview:
    """The files as the preview's next version, {session}/{token}/{version}/: the control plane serves
    the version the session's document names, so a page never sees half of one. The version before
    the previous one is removed once the previous one is served; the previous one stays, for pages
    still loading its assets."""
    token = _preview_token(ctx, request, instance)
    version = instance.previewVersion + 1
    base = f"{request.sessionId}/{token}/"
    for path in files:
        name = path.relative_to(site).as_posix()
        ctx.storage.write(PREVIEWS_BUCKET, f"{base}{version}/{name}", path.read_bytes(), content_type(name))
    served = ctx.store.get_session(request.sessionId).preview
    if version > 2 and served is not None and (served.version or 0) >= version - 1:
        # The one before the served one: never the served one, whose event may not have landed.
        ctx.storage.delete_prefix(PREVIEWS_BUCKET, f"{base}{version - 2}/")
    url = preview_url(ctx.settings, request.sessionId, token)
    instance.previewToken, instance.previewUrl, instance.previewVersion = token, url, version
    save_instance(ctx, request.sessionId, instance)
    return PublishedPreview(
        previewUrl=url, deployedAt=utcnow().isoformat(), version=version, live=instance.live, worker=worker
    )
