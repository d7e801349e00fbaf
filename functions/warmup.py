"""A new job instance readies itself before its first action, not during it.

Measured on a second instance (issue 25), a session's first action there spent most of its time
on what any action of the instance would have paid once: the isolation backend's probe (1.2 s for
Cloud Run sandboxes' start-up checks), the egress proxy's start and, above all, unpacking its
template's dependency tree from Cloud Storage (1,504 files for static-site, 6,091 for react-vite).
The instance does these in the background as it starts. An action that needs one of them while it
is under way waits for it (the same locks), never does it twice.

Only trees Cloud Storage already holds are fetched (no install runs here), and no more of them
than the instance keeps unused (functions/local_copies.py), which infra/gcp sizes its memory for.

On Cloud Run the job has CPU only while it serves a request or starts (cpu_idle: "when the Cloud
Run service finishes handling a request, the instance's access to CPU will be disabled or severely
limited", https://cloud.google.com/run/docs/tips/general): so the instance counts as started only
once the warm-up has ended (`ended`, which GET /readyz answers and infra/gcp's startup probe asks).
"""

from __future__ import annotations

import logging
import threading
import time
import zipfile
from collections.abc import Callable

from functions import templates
from functions.context import Context
from functions.dependencies import InstallSpec
from functions.local_copies import KEPT_UNUSED_TREES
from vibesdk_gcp.catalog import template_catalog

logger = logging.getLogger("functions.warmup")


def warm_up(ctx: Context) -> dict[str, str]:
    """Ready the instance; what each step took (or why it did not happen), for its log line."""
    done: dict[str, str] = {}
    started = time.monotonic()
    backend, why = ctx.sandbox.isolation.selected()
    done["isolation"] = f"{_since(started)} s ({backend.name if backend else why})"
    started = time.monotonic()
    ctx.sandbox.proxy()
    done["egress proxy"] = f"{_since(started)} s"
    entries = {entry.get("name"): entry for entry in template_catalog(ctx.storage)}
    for name in ctx.settings.warm_templates[:KEPT_UNUSED_TREES]:
        started = time.monotonic()
        done[f"tree of {name}"] = f"{_warm_tree(ctx, name, entries.get(name))} in {_since(started)} s"
    return done


def _warm_tree(ctx: Context, name: str, entry: dict[str, object] | None) -> str:
    spec = InstallSpec.of(entry.get("install") if entry else None)  # type: ignore[arg-type]
    if spec is None:
        return "none to fetch" if entry else "no such template"
    bundle = templates.bundle(ctx.storage, name, ctx.disk.templates())
    with zipfile.ZipFile(bundle) as archive:
        try:
            inputs = {input_name: archive.read(input_name) for input_name in spec.inputs}
        except KeyError:
            return "its template has no lockfile"
    with ctx.dependencies.holding(spec.key(inputs), None) as held:
        return f"from {held.source}" if held else "not in Cloud Storage yet"


# Set once this process's warm-up has ended, done or stopped: the instance is started.
ended = threading.Event()


def start_warm_up(context: Callable[[], Context]) -> threading.Thread:
    """The warm-up in a thread of its own, the context made there: a fork handler may call this."""

    def run() -> None:
        try:
            logger.info("instance ready: %s", warm_up(context()))
        except Exception:  # an action does what is left, on its first need
            logger.exception("the instance's warm-up stopped")
        finally:
            ended.set()

    thread = threading.Thread(target=run, name="warm-up", daemon=True)
    thread.start()
    return thread


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
