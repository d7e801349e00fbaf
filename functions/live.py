"""Live instances: after an action changes a live instance's files, the job queues the preview's
rebuild (refreshPreview) as a run of the session, so it runs in the session's order on any instance
and survives this one's loss. No dev server outlives an action (../shared/DESIGN.md, "Previews").

Back-to-back changes share one rebuild: while a rebuild is queued and no delivery has taken it, it
will build the newest files, and no other is queued.
"""

from __future__ import annotations

import logging
from pathlib import Path

from functions.context import Context
from functions.instances import Instance
from functions.workspace import SaveReport
from vibesdk_gcp.envelope import PubsubMessage
from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.follow_ups import follow_up, queue_follow_up
from vibesdk_gcp.schemas import SandboxRequest

logger = logging.getLogger("functions.live")

REFRESH = "refreshPreview"
VITE_CONFIGS = tuple(f"vite.config.{ext}" for ext in ("js", "mjs", "cjs", "ts", "mts", "cts"))


def is_live(commands: dict[str, str | None], init_command: str | None) -> bool:
    """An instance whose template names a build for its preview, or that was given a dev server to run."""
    return bool(commands.get("build")) or bool(init_command)


def preview_command(workspace: Path, commands: dict[str, str | None]) -> str | None:
    """What rebuilds the preview: Vite's own build for a Vite app (no package manager or type-check in
    front of it: `tsc -b && vite build` checks types that runStaticAnalysisCode reports), else the build."""
    if any((workspace / name).is_file() for name in VITE_CONFIGS):
        return "./node_modules/.bin/vite build"
    return commands.get("build")


def after_change(ctx: Context, request: SandboxRequest, instance: Instance, report: SaveReport) -> None:
    """Queue the preview's rebuild when the action changed a live instance's files."""
    if not (instance.live and report.changed):
        return
    if any(run.action == REFRESH and not run.claimed for run in ctx.store.unfinished_in_session(request.sessionId)):
        return  # a queued rebuild will build these files too
    rebuild = follow_up(request, REFRESH)
    try:
        message_id = queue_follow_up(ctx.store, ctx.bus, rebuild)
    except ServiceUnavailable as error:
        # The action's own work is done and kept: the next change (or deployInstance) rebuilds.
        logger.warning("the preview's rebuild was not queued: %s", error)
        return
    # This delivery runs it next, once the action ends (functions/ordering.py): its own delivery
    # then finds it done.
    message = PubsubMessage(rebuild.model_dump_json().encode(), message_id, rebuild.attributes())
    ctx.order.hold(request.sessionId, rebuild.runId, message)
