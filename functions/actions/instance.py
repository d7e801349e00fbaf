"""Instance lifecycle: create from a template or from files, describe, list, shut down."""

from __future__ import annotations

from functions import live as live_previews
from functions import lockfiles, project_commands, templates
from functions.actions.common import Outcome, Result, install, run_in_sandbox
from functions.actions.files import listed_files, placed, write_placed
from functions.context import Context
from functions.dependencies import InstallSpec
from functions.instances import Instance, delete_instance, load_instance, save_instance, workspace_of
from functions.workspace import Workspace
from vibesdk_gcp.catalog import template_catalog
from vibesdk_gcp.errors import ActionFailed
from vibesdk_gcp.names import FILES_TEMPLATE, LOGS_BUCKET, PREVIEWS_BUCKET
from vibesdk_gcp.params import CreateInstanceParams, FileContents, Params, TemplateDetailsParams
from vibesdk_gcp.previews import new_token
from vibesdk_gcp.schemas import SandboxRequest, SessionChanges, utcnow

# The instance's fields no answer shows: its secrets, its preview's key, our own bookkeeping.
PRIVATE_FIELDS = {"envVars", "previewToken", "notifiedErrors"}


def get_template_details(request: SandboxRequest, params: TemplateDetailsParams, ctx: Context) -> Result:
    name = params.templateName or request.templateName
    if not name:
        raise ActionFailed("getTemplateDetails needs templateName")
    bundle = templates.bundle(ctx.storage, name, ctx.disk.templates())
    entry = next((e for e in template_catalog(ctx.storage) if e.get("name") == name), None)
    return {"templateDetails": templates.details(bundle, name, entry)}


def create_instance(request: SandboxRequest, params: CreateInstanceParams, ctx: Context) -> Outcome:
    """From the files given, or else from the template named (here or in the request)."""
    if params.files is None and not (params.templateName or request.templateName):
        raise ActionFailed("createInstance needs templateName or files")
    if load_instance(ctx, request.sessionId) is not None:
        raise ActionFailed(f"session {request.sessionId} already has an instance")
    workspace = workspace_of(ctx, request.sessionId)
    if params.files is None:
        name = params.templateName or request.templateName or ""
        bundle = templates.bundle(ctx.storage, name, ctx.disk.templates())
        entry = next((e for e in template_catalog(ctx.storage) if e.get("name") == name), {})
        workspace.start_empty()
        written = templates.extract(bundle, workspace.path)
        spec = InstallSpec.of(entry.get("install"))
    else:
        name = params.templateName or request.templateName or FILES_TEMPLATE
        written = _write_project(workspace, params.files)
        spec = lockfiles.install_for(written)
        entry = {"commands": project_commands.commands_for(workspace.path, lockfiles.script_runner(written))}
    # Ready to build when the run succeeds: the dependencies are installed first.
    dependencies = install(ctx, request, spec, workspace).as_result() if spec else None
    ctx.sandbox.prepare(workspace.path, spec.folder if spec else None)
    init_output = None
    # From files, initCommand starts a dev server (VibSDK's 'bun run dev'), which no action outlives here:
    # it makes the instance live instead (functions/live.py).
    if params.initCommand and params.files is None:
        outcome = run_in_sandbox(ctx, params.initCommand, workspace.path, params.envVars)
        init_output = outcome.stdout.decode(errors="replace")[-4096:]
        if outcome.exit_code != 0:
            stderr = outcome.stderr.decode(errors="replace")[-2048:]
            raise ActionFailed(f"initCommand {outcome.ended}: {stderr}")
    report = workspace.save()
    commands = dict(entry.get("commands") or {})
    live = live_previews.is_live(commands, params.initCommand)
    if live:
        commands["preview"] = live_previews.preview_command(workspace.path, commands)
    instance = Instance(
        instanceId=request.sessionId,
        templateName=name,
        projectName=params.projectName or request.projectName or name,
        owner=request.owner,
        envVars=params.envVars,
        commands=commands,
        install=spec.as_entry() if spec else None,
        source=FILES_TEMPLATE if params.files is not None else "template",
        initCommand=params.initCommand,
        webhookUrl=params.webhookUrl,
        createdAt=utcnow().isoformat(),
        live=live,
    )
    save_instance(ctx, request.sessionId, instance)
    live_previews.after_change(ctx, request, instance, report)  # its first version
    result = {
        "instanceId": instance.instanceId,
        "templateName": name,
        "fileTree": templates.file_tree(written),
        "initOutput": init_output,
        "dependencies": dependencies,
    }
    return Outcome(result, SessionChanges(instanceId=instance.instanceId))


def _write_project(workspace: Workspace, files: list[FileContents]) -> list[str]:
    """The files, written into a fresh workspace as writeFiles writes them: the paths written."""
    workspace.start_empty()
    targets = placed(workspace.path, files)
    total = sum(len(item.fileContents.encode()) for item, _ in targets)
    if total > templates.MAX_EXTRACTED_BYTES:
        raise ActionFailed(f"the files add up to {total} bytes, over the {templates.MAX_EXTRACTED_BYTES} limit")
    write_placed(workspace.path, targets)
    return sorted({rel for _, rel in targets})


def get_instance_details(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Result:
    workspace = workspace_of(ctx, request.sessionId)
    workspace.restore()
    files = listed_files(workspace)
    return {
        "instance": instance.model_dump(exclude=PRIVATE_FIELDS),
        "fileTree": templates.file_tree(files),
        "fileCount": len(files),
    }


def get_instance_status(request: SandboxRequest, params: Params, ctx: Context) -> Result:
    instance = load_instance(ctx, request.sessionId)
    if instance is None:
        return {"instanceId": request.sessionId, "isHealthy": False, "status": "absent"}
    return {
        "instanceId": instance.instanceId,
        "isHealthy": True,
        "status": "deployed" if instance.previewToken else "ready",
        "previewUrl": instance.previewUrl,
    }


def list_all_instances(request: SandboxRequest, params: Params, ctx: Context) -> Result:
    """The caller's instances: their sessions by query, never every owner's records read and filtered."""
    found = []
    for session in ctx.store.sessions_of(request.owner):
        instance = load_instance(ctx, session.sessionId) if session.instanceId else None
        if instance is not None and instance.owner == request.owner:
            found.append(instance.model_dump(exclude=PRIVATE_FIELDS))
    return {"instances": found, "count": len(found)}


def shutdown_instance(request: SandboxRequest, params: Params, ctx: Context, instance: Instance) -> Outcome:
    workspace_of(ctx, request.sessionId).destroy()
    delete_instance(ctx, request.sessionId)
    ctx.storage.delete_prefix(PREVIEWS_BUCKET, f"{request.sessionId}/")
    ctx.storage.delete_prefix(LOGS_BUCKET, f"{request.sessionId}/")
    # The session's next instance is published under a new token: the old URL, known to whoever
    # saw it, never serves again.
    changes = SessionChanges(instanceId=None, preview=None, previewToken=new_token())
    return Outcome({"instanceId": request.sessionId, "shutdown": True}, changes)
