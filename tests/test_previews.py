"""Preview naming (vibesdk_gcp/previews.py) and the dispatch of a preview's host (control_plane/middleware.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from control_plane.app import create_app
from control_plane.errors import NotRunHere
from control_plane.live import inject
from control_plane.middleware import PreviewHosts, host_preview_headers
from control_plane.models import CreateSession, QueueAction
from control_plane.service import ControlPlane, Limits, PreviewFile
from functions.actions.instance import shutdown_instance
from functions.actions.runtime_errors import MAX_BROWSER_ERRORS, MAX_KEPT_ERRORS, kept
from functions.context import Context
from functions.instances import Instance
from tests.test_recorder import event, queue
from vibesdk_gcp import clients, previews
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.errors import ConfigurationError, NotFound, TooMany
from vibesdk_gcp.names import PREVIEWS_BUCKET, REQUESTS_TOPIC
from vibesdk_gcp.params import NoParams
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import PublishedPreview, SessionChanges
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage

SESSION = "0b9f3c1e-6a2d-4e8f-9c3b-5d7a1e2f4b6c"
TOKEN = "0123456789abcdef01234567"
LABEL = "0b9f3c1e6a2d4e8f9c3b5d7a1e2f4b6c-0123456789abcdef01234567"


def test_label_round_trip() -> None:
    session, token = str(uuid.uuid4()), previews.new_token()
    label = previews.label_of(session, token)
    assert label is not None and len(label) == 57 and label == label.lower()
    assert previews.parse_label(label) == (session, token)
    assert previews.label_of(SESSION, TOKEN) == LABEL


@pytest.mark.parametrize(
    "label",
    [
        LABEL[:-1],  # a token one digit short
        LABEL + "0",  # one too long
        LABEL[1:],  # a session one digit short
        LABEL.upper(),
        LABEL.replace("-", ""),
        LABEL.replace("-", "."),
        LABEL[:-1] + "g",  # not hex
        "0b9f3c1e6a2d1e8f9c3b5d7a1e2f4b6c-0123456789abcdef01234567",  # version 1: no session of ours
        "",
        "www",
    ],
)
def test_labels_that_are_none_of_ours(label: str) -> None:
    assert previews.parse_label(label) is None


@pytest.mark.parametrize(
    ("session", "token"),
    [
        ("s", TOKEN),  # not a uuid
        (SESSION.upper(), TOKEN),  # not the control plane's spelling: the parse would not give it back
        (SESSION.replace("-", ""), TOKEN),
        (str(uuid.uuid1()), TOKEN),
        (SESSION, "a3Jq9_zX-older-release-token"),  # secrets.token_urlsafe, before host previews
        (SESSION, TOKEN.upper()),
    ],
)
def test_names_without_a_host_label(session: str, token: str) -> None:
    assert previews.label_of(session, token) is None


def test_urls_with_and_without_a_preview_domain() -> None:
    plain = Settings(public_url="https://api.example.com")
    path = f"https://api.example.com/preview/{SESSION}/{TOKEN}/"
    assert previews.preview_url(plain, SESSION, TOKEN) == previews.tunnel_url(plain, SESSION, TOKEN) == path

    hosted = replace(plain, preview_domain="previews.example.net")
    assert previews.preview_url(hosted, SESSION, TOKEN) == f"https://{LABEL}.previews.example.net/"
    assert previews.tunnel_url(hosted, SESSION, TOKEN) == path
    # A name no label can carry is served by path, as before.
    assert previews.preview_url(hosted, "s", TOKEN) == "https://api.example.com/preview/s/" + TOKEN + "/"

    local = replace(plain, preview_domain="localhost:8080")
    assert previews.preview_url(local, SESSION, TOKEN) == f"http://{LABEL}.localhost:8080/"
    sub = replace(plain, preview_domain="p.localhost")
    assert previews.preview_url(sub, SESSION, TOKEN).startswith("http://")
    not_local = replace(plain, preview_domain="localhost.example.com")
    assert previews.preview_url(not_local, SESSION, TOKEN).startswith("https://")

    separate = replace(plain, preview_origin="https://previews.example.org")
    assert previews.tunnel_url(separate, SESSION, TOKEN).startswith("https://previews.example.org/preview/")


@pytest.mark.parametrize(
    ("host", "domain", "label"),
    [
        (f"{LABEL}.localhost:8080", "localhost:8080", LABEL),
        (f"{LABEL.upper()}.LOCALHOST:8080", "localhost:8080", LABEL),  # Host is case-insensitive
        (f"{LABEL}.localhost:9999", "localhost:8080", LABEL),  # under the domain on any port: never the API
        (f"{LABEL}.previews.example.com", "previews.example.com", LABEL),
        (f"{LABEL}.previews.example.com:443", "previews.example.com", LABEL),
        (f"{LABEL}.previews.example.com.", "previews.example.com", LABEL),
        ("a.b.previews.example.com", "previews.example.com", "a.b"),
        # The domain itself is a preview's host too (no preview's): the local stack's API is on 127.0.0.1.
        ("localhost:8080", "localhost:8080", ""),
        ("previews.example.com", "previews.example.com", ""),
        ("previews.example.com.:443", "previews.example.com", ""),
        # Cut at the first ':', whatever follows: an empty port, one that is no number, a second colon.
        (f"{LABEL}.previews.example.com:", "previews.example.com", LABEL),
        (f"{LABEL}.previews.example.com:abc", "previews.example.com", LABEL),
        (f"{LABEL}.previews.example.com:1:2", "previews.example.com", LABEL),
        ("127.0.0.1:8080", "localhost:8080", None),
        ("[::1]:8080", "localhost:8080", None),
        ("api.example.com", "previews.example.com", None),
        ("evilpreviews.example.com", "previews.example.com", None),
        ("", "previews.example.com", None),
    ],
)
def test_host_label(host: str, domain: str, label: str | None) -> None:
    assert previews.host_label(host, domain) == label
    assert previews.is_preview_host(host, domain) is (label is not None)


@pytest.mark.parametrize(
    "host",
    [f"{LABEL}.previews.example.com@evil.example", "api.example.com@x", "api.example.com/", "a b", "api..example.com"],
)
def test_a_host_that_is_no_host_name_is_never_the_apis(host: str) -> None:
    assert previews.host_label(host, "previews.example.com") is None
    assert previews.is_preview_host(host, "previews.example.com")


async def endpoint(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"api {request.url.path}")


async def preview(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"preview {request.url.path}")


def dispatching(domain: str | None) -> TestClient:
    site = Starlette(routes=[Route("/{path:path}", preview)])
    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])
    return TestClient(PreviewHosts(app, domain, site))


def test_a_preview_host_never_reaches_the_rest_of_the_control_plane() -> None:
    client = dispatching("localhost:8080")
    assert client.get("/api/agent", headers={"Host": f"{LABEL}.localhost:8080"}).text == "preview /api/agent"
    assert client.get("/dashboard", headers={"Host": "nonsense.localhost:8080"}).text == "preview /dashboard"
    assert client.get("/api/agent", headers={"Host": "127.0.0.1:8080"}).text == "api /api/agent"
    # The bare domain, an empty or bad port, a userinfo-like tail: the previews' site, not the API.
    for host in ("localhost:8080", "localhost", f"{LABEL}.localhost:", f"{LABEL}.localhost:abc", "localhost@evil"):
        assert client.get("/api/agent", headers={"Host": host}).text == "preview /api/agent", host
    assert dispatching(None).get("/api/agent", headers={"Host": f"{LABEL}.localhost:8080"}).text == "api /api/agent"


@pytest.mark.parametrize(
    ("public_url", "domain"),
    [
        ("https://previews.example.com", "previews.example.com"),
        ("https://api.previews.example.com", "previews.example.com"),
        ("http://localhost:8080", "localhost:8080"),
        ("http://localhost:9000", "localhost:8080"),  # ports are no part of a host's name
        ("https://API.Previews.Example.com.", "previews.example.com"),
    ],
)
def test_a_preview_domain_that_covers_the_control_plane_is_refused(public_url: str, domain: str) -> None:
    with pytest.raises(ConfigurationError, match="VIBESDK_PUBLIC_URL .* is on VIBESDK_PREVIEW_DOMAIN"):
        Settings.from_env({"VIBESDK_PUBLIC_URL": public_url, "VIBESDK_PREVIEW_DOMAIN": domain})


def test_a_preview_domain_beside_the_control_plane_is_accepted() -> None:
    for public_url, domain in (
        ("https://api.example.com", "previews.example.com"),
        ("https://example.com", "previews.example.com"),  # above the domain: not a preview's host
        ("https://evilpreviews.example.com", "previews.example.com"),
        ("http://127.0.0.1:8080", "localhost:8080"),  # the local stack
    ):
        env = {"VIBESDK_PUBLIC_URL": public_url, "VIBESDK_PREVIEW_DOMAIN": domain}
        assert Settings.from_env(env).preview_domain == domain


def test_host_previews_have_their_own_origin_and_chosen_framers() -> None:
    settings = Settings(
        public_url="https://api.example.com",
        preview_domain="previews.example.net",
        preview_frame_ancestors=("https://build.example.com",),
    )
    headers = host_preview_headers(settings)
    assert headers["Content-Security-Policy"] == "frame-ancestors https://api.example.com https://build.example.com"
    assert "sandbox" not in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Cache-Control"] == "no-store"
    assert "X-Frame-Options" not in headers and "Access-Control-Allow-Origin" not in headers


@pytest.fixture
def plane(settings: Settings, store: RunStore, storage: Storage) -> ControlPlane:
    publisher = clients.publisher_client(settings)
    publisher.create_topic(name=publisher.topic_path(settings.project, REQUESTS_TOPIC))
    hosted = replace(settings, public_url="https://api.example.com", preview_domain="previews.example.net")
    return ControlPlane(store, Bus(publisher, settings.project), storage, settings=hosted)


def test_the_preview_token_is_the_sessions_from_its_creation(plane: ControlPlane, store: RunStore) -> None:
    session_id = plane.create_session("alice", CreateSession(templateName="static-site")).sessionId
    token = store.get_session(session_id).previewToken
    assert token is not None and previews.TOKEN.fullmatch(token)
    label = previews.label_of(session_id, token)
    assert plane.preview_urls("alice", session_id) == (
        f"https://{label}.previews.example.net/",
        f"https://api.example.com/preview/{session_id}/{token}/",
    )
    with pytest.raises(NotFound):
        plane.preview_urls("mallory", session_id)  # someone else's session is a missing one


def test_a_session_older_than_tokens_has_its_published_url(plane: ControlPlane, store: RunStore) -> None:
    request = queue(store)  # as a previous release queued it: no token
    assert plane.preview_urls("alice", request.sessionId) is None
    published = PublishedPreview(previewUrl="https://api.example.com/preview/s/t/", deployedAt="2026-01-01T00:00:00Z")
    store.apply(event(request, 2, "succeeded", session=SessionChanges(preview=published)))
    assert plane.preview_urls("alice", request.sessionId) == (published.previewUrl, published.previewUrl)


def test_a_preview_file_is_streamed_in_range_reads(storage: Storage) -> None:
    storage.create_bucket(PREVIEWS_BUCKET)
    data = bytes(range(256)) * 40  # 10 240 bytes: three chunks of 4 KiB, the last one short
    storage.write(PREVIEWS_BUCKET, f"{SESSION}/{TOKEN}/big.bin", data)
    info, chunks = storage.stream(PREVIEWS_BUCKET, f"{SESSION}/{TOKEN}/big.bin", chunk_bytes=4096)
    assert info.size == len(data)
    assert [len(chunk) for chunk in chunks] == [4096, 4096, 2048]
    assert b"".join(storage.stream(PREVIEWS_BUCKET, f"{SESSION}/{TOKEN}/big.bin", chunk_bytes=4096)[1]) == data
    with pytest.raises(NotFound):
        storage.stream(PREVIEWS_BUCKET, f"{SESSION}/{TOKEN}/missing.bin")  # before any chunk is read


def published(
    plane: ControlPlane, store: RunStore, version: int, live: bool = True, worker: bool = False, session_id: str = ""
) -> tuple[str, str]:
    """A session whose preview's `version` the job published (its files are the caller's to write)."""
    session_id = session_id or plane.create_session("alice", CreateSession(templateName="react-vite")).sessionId
    session = store.get_session(session_id)
    assert session.previewToken is not None
    url = previews.preview_url(plane._settings, session_id, session.previewToken)
    preview = PublishedPreview(
        previewUrl=url, deployedAt="2026-12-01T00:00:00Z", version=version, live=live, worker=worker
    )
    store.apply(
        event(queue(store, session_id), 2, "succeeded", session=SessionChanges(instanceId=session_id, preview=preview))
    )
    return session_id, session.previewToken


def test_a_preview_file_gone_before_its_first_byte_is_a_404_not_a_cut_200(
    plane: ControlPlane, store: RunStore, storage: Storage, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file deleted between its stat and its first read (its version removed) is answered as
    missing, before any header is sent."""
    storage.create_bucket(PREVIEWS_BUCKET)
    session_id, token = published(plane, store, 1, live=False)
    name = f"{session_id}/{token}/1/page.html"
    storage.write(PREVIEWS_BUCKET, name, b"<p>hi</p>")
    found = plane.preview_file

    def then_deleted(*args: str) -> PreviewFile:
        file = found(*args)
        storage.delete_prefix(PREVIEWS_BUCKET, name)
        return file

    monkeypatch.setattr(plane, "preview_file", then_deleted)
    with TestClient(create_app(replace(settings, preview_domain=None), plane, authenticator=None)) as client:
        answer = client.get(f"/preview/{session_id}/{token}/page.html")
    assert answer.status_code in (200, 404)
    assert answer.status_code == 404 or answer.content == b"<p>hi</p>"  # a versioned bucket still has it


def test_a_preview_serves_the_version_its_session_names_and_never_an_older_one(
    plane: ControlPlane, store: RunStore, storage: Storage
) -> None:
    storage.create_bucket(PREVIEWS_BUCKET)
    session_id, token = published(plane, store, 1, live=False)
    for version in (1, 2):
        storage.write(PREVIEWS_BUCKET, f"{session_id}/{token}/{version}/index.html", f"v{version}".encode())
    read = lambda: b"".join(plane.preview_file(session_id, token, "").chunks)  # noqa: E731
    assert read() == b"v1"
    published(plane, store, 2, live=False, session_id=session_id)
    assert read() == b"v2"
    published(plane, store, 1, live=False, session_id=session_id)  # an earlier build's event, landing late
    assert read() == b"v2"
    with pytest.raises(NotFound):
        plane.preview_file(session_id, previews.new_token(), "")  # another token: no preview


def test_a_live_page_carries_the_reload_script_by_either_form(
    plane: ControlPlane, store: RunStore, storage: Storage, settings: Settings
) -> None:
    storage.create_bucket(PREVIEWS_BUCKET)
    session_id, token = published(plane, store, 3)
    folder = f"{session_id}/{token}/3/"
    storage.write(
        PREVIEWS_BUCKET, folder + "index.html", b"<html><head><title>t</title></head><body></body></html>", "text/html"
    )
    storage.write(PREVIEWS_BUCKET, folder + "app.js", b"console.log(1)", "text/javascript")
    label = previews.label_of(session_id, token)
    local = replace(settings, preview_domain="preview.localhost:8080", public_url="http://127.0.0.1:8080")
    with TestClient(create_app(local, plane, authenticator=None)) as client:
        by_path = client.get(f"/preview/{session_id}/{token}/")
        by_host = client.get("/", headers={"host": f"{label}.preview.localhost:8080"})
        script = client.get("/__vibesdk/live.js", headers={"host": f"{label}.preview.localhost:8080"})
        js = client.get(f"/preview/{session_id}/{token}/app.js")
    base = f"/preview/{session_id}/{token}/"
    assert by_path.text.startswith(
        f'<html><head><script src="{base}__vibesdk/live.js" data-base="{base}" data-version="3"></script><title>'
    )
    assert '<script src="/__vibesdk/live.js" data-base="/" data-version="3"></script>' in by_host.text
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in script.text
    assert js.text == "console.log(1)"  # only pages carry it


def test_a_worker_apps_api_is_a_501_and_its_client_routes_are_its_page(
    plane: ControlPlane, store: RunStore, storage: Storage
) -> None:
    storage.create_bucket(PREVIEWS_BUCKET)
    session_id, token = published(plane, store, 1, live=False, worker=True)
    storage.write(PREVIEWS_BUCKET, f"{session_id}/{token}/1/index.html", b"<p>client</p>", "text/html")
    assert b"".join(plane.preview_file(session_id, token, "users/42").chunks) == b"<p>client</p>"
    with pytest.raises(NotRunHere, match="Worker backend"):
        plane.preview_file(session_id, token, "api/users")
    with pytest.raises(NotFound):
        plane.preview_file(session_id, token, "missing.js")  # a file, not a route


def test_error_reports_need_the_previews_token_and_are_bounded(
    plane: ControlPlane, store: RunStore, storage: Storage, settings: Settings
) -> None:
    session_id, token = published(plane, store, 1)
    report = {
        "errors": [
            {
                "kind": "error",
                "message": "boom",
                "source": f"http://x/preview/{session_id}/{token}/assets/a.js",
                "line": 3,
            }
        ]
    }
    base = f"/preview/{session_id}/{token}/__vibesdk/errors"
    with TestClient(create_app(replace(settings, preview_domain=None), plane, authenticator=None)) as client:
        wrong = client.post(
            f"/preview/{session_id}/{previews.new_token()}/__vibesdk/errors", content=json.dumps(report)
        )
        huge = client.post(base, content=json.dumps({"errors": [{"kind": "error", "message": "x" * 3000}]}))
        many = client.post(base, content=json.dumps({"errors": [{"kind": "error", "message": "x"}] * 11}))
        accepted = [client.post(base, content=json.dumps(report)).status_code for _ in range(11)]
    assert wrong.status_code == 404 and huge.status_code == 422 and many.status_code == 422
    assert accepted == [202] + [429] * 10  # one report waits at a time (then REPORTS_PER_MINUTE)
    reported = [run for run in store.runs_of(session_id) if run.action == "reportRuntimeErrors"]
    assert len(reported) == 1


def test_the_live_stream_sends_each_new_version_then_gone(plane: ControlPlane, store: RunStore) -> None:
    session_id, token = published(plane, store, 1)

    async def follow() -> list[tuple[str, str]]:
        feed = await plane.live_versions(session_id, token)
        seen = []
        try:
            seen += [(m.event, m.data) for m in await feed.next()]
            await asyncio.to_thread(published, plane, store, 2, True, False, session_id)
            while ("version", "2") not in seen:
                seen += [(m.event, m.data) for m in await feed.next()]
            shutdown = queue(store, session_id)
            changes = SessionChanges(instanceId=None, preview=None, previewToken=previews.new_token())
            await asyncio.to_thread(store.apply, event(shutdown, 2, "succeeded", session=changes))
            while ("gone", "the preview was shut down") not in seen:
                seen += [(m.event, m.data) for m in await feed.next()]
        finally:
            await feed.__aexit__(None, None, None)
        return seen

    seen = asyncio.run(asyncio.wait_for(follow(), 30))
    assert seen[0] == ("version", "1") and ("version", "2") in seen and seen[-1][0] == "gone"


def test_shutdown_ends_a_preview_url_for_good(plane: ControlPlane, store: RunStore, context: Context) -> None:
    """deployInstance keeps the session's token (stable URLs); shutdownInstance hands the next instance a new one."""
    session_id = plane.create_session("alice", CreateSession(templateName="static-site")).sessionId
    before = plane.preview_urls("alice", session_id)
    instance = Instance(instanceId=session_id, templateName="static-site", projectName="p", createdAt="2026-01-01")
    shutdown = queue(store, session_id)
    outcome = shutdown_instance(shutdown, NoParams(), context, instance)
    assert outcome.session is not None and outcome.session.previewToken != store.get_session(session_id).previewToken
    store.apply(event(shutdown, 2, "succeeded", session=outcome.session))
    after = plane.preview_urls("alice", session_id)
    assert before is not None and after is not None
    assert after[0] != before[0] and after[1] != before[1]
    assert store.get_session(session_id).previewToken == outcome.session.previewToken


# Against a hostile page and its visitors.


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
