"""What several actions need: the instance they act on."""

from __future__ import annotations

from functions.context import Context
from functions.instances import Instance, load_instance
from vibesdk_gcp.errors import ActionFailed


def require_instance(ctx: Context, session_id: str) -> Instance:
    instance = load_instance(ctx, session_id)
    if instance is None:
        raise ActionFailed(f"session {session_id} has no instance: run createInstance first")
    return instance
