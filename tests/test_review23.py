"""Live previews against a hostile page and its visitors (issue 23's review): each failed on the
first version of the change."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from control_plane.app import create_app
from control_plane.live import inject
from control_plane.models import QueueAction
from control_plane.service import ControlPlane, Limits
from functions.actions.runtime_errors import MAX_BROWSER_ERRORS, MAX_KEPT_ERRORS, kept
from tests.test_previews import published
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.errors import NotFound, TooMany
from vibesdk_gcp.names import PREVIEWS_BUCKET, REQUESTS_TOPIC
from vibesdk_gcp.params import NoParams
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage


@pytest.fixture
def plane(settings: Settings, store: RunStore, storage: Storage) -> ControlPlane:
    """As tests/test_previews.py's."""
    publisher = clients.publisher_client(settings)
    publisher.create_topic(name=publisher.topic_path(settings.project, REQUESTS_TOPIC))
    hosted = replace(settings, public_url="https://api.example.com", preview_domain="previews.example.net")
    return ControlPlane(store, Bus(publisher, settings.project), storage, settings=hosted)


def test_the_reload_script_goes_into_a_page_in_linear_time() -> None:
    """A tenant's page of 48 KB of `<head ` (no `>`) makes HEAD.search backtrack quadratically;
    inject runs on the event loop (control_plane/app.py preview_file), so the whole process stalls."""
    page = b"<head " * 8_000
    started = time.perf_counter()
    inject(page, "/", 1)
    assert time.perf_counter() - started < 0.5


def test_a_page_of_the_previous_version_still_loads_its_assets(
    plane: ControlPlane, store: RunStore, storage: Storage
) -> None:
    """_publish keeps version N-1 "for pages still loading its assets", but preview_file serves only
    the version the session names: a page of v1 asking for its hashed bundle after v2 lands gets a 404."""
    storage.create_bucket(PREVIEWS_BUCKET)
    session_id, token = published(plane, store, 1)
    storage.write(PREVIEWS_BUCKET, f"{session_id}/{token}/1/index.html", b"<script src=assets/a-111.js>")
    storage.write(PREVIEWS_BUCKET, f"{session_id}/{token}/1/assets/a-111.js", b"v1")
    storage.write(PREVIEWS_BUCKET, f"{session_id}/{token}/2/index.html", b"<script src=assets/a-222.js>")
    storage.write(PREVIEWS_BUCKET, f"{session_id}/{token}/2/assets/a-222.js", b"v2")
    published(plane, store, 2, session_id=session_id)
    try:
        body = b"".join(plane.preview_file(session_id, token, "assets/a-111.js").chunks)
    except NotFound:
        pytest.fail("v1's bundle, kept in the bucket, is a 404 for the v1 page still loading")
    assert body == b"v1"


def test_preview_visitors_cannot_use_up_the_owners_run_quota(
    plane: ControlPlane, store: RunStore, settings: Settings
) -> None:
    """reportRuntimeErrors runs are queued outside the quota but counted by it (active_runs counts
    every unfinished run of the owner): anyone holding the preview link locks the owner out."""
    limited = ControlPlane(store, plane._bus, plane._storage, Limits(max_active_runs=5), settings=plane._settings)
    session_id, token = published(limited, store, 1)
    # published() leaves createInstance queued: the owner has 4 runs left of 5.
    report = json.dumps({"errors": [{"kind": "error", "message": "from a stranger"}]})
    base = f"/preview/{session_id}/{token}/__vibesdk/errors"
    with TestClient(create_app(replace(settings, preview_domain=None), limited, authenticator=None)) as client:
        codes = [client.post(base, content=report).status_code for _ in range(6)]
    assert codes == [202] + [429] * 5  # one report waits at a time; the page sends the others again
    time.sleep(1.1)  # past the quota's cached count (control_plane/quota.py REFRESH_SECONDS)
    try:
        limited.queue_action("alice", session_id, QueueAction(action="getInstanceErrors", params=NoParams()))
    except TooMany:
        pytest.fail("six anonymous error reports took the owner's quota of five active runs")


def test_a_pages_errors_never_push_the_builds_out() -> None:
    build = [{"message": f"build {n}", "source": "vite build"} for n in range(5)]
    page = [{"message": f"page {n}", "source": "browser"} for n in range(MAX_KEPT_ERRORS)]
    errors = kept(build + page)
    assert errors[:5] == build and len(errors) == 5 + MAX_BROWSER_ERRORS
    assert errors[-1] == page[-1]  # the newest of the page's are the ones kept
