"""Previews by host on the local stack: http://{label}.preview.localhost:PORT/, one origin per preview, as VibSDK links them."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import wait_for_run
from vibesdk_gcp import previews

pytestmark = pytest.mark.e2e
NO_PREVIEW = "no such preview, or it was shut down"


def act(api: httpx.Client, session_id: str, action: str) -> dict[str, object]:
    queued = api.post(f"/api/agent/{session_id}/actions", json={"action": action, "params": {}})
    assert queued.status_code == 202, queued.text
    return wait_for_run(api, queued.json()["runUrl"], timeout=120)


def test_a_preview_served_by_its_own_host(api: httpx.Client, stack: Stack) -> None:
    created = api.post("/api/agent", json={"templateName": "static-site"}).json()
    session_id = created["sessionId"]
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    deployed = act(api, session_id, "deployInstance")
    assert deployed["status"] == "succeeded", deployed

    url = urlsplit(str(deployed["result"]["previewUrl"]))  # type: ignore[index]
    port = stack.ports.control_plane
    assert (url.scheme, url.port, url.path) == ("http", port, "/")
    label = url.hostname.removesuffix(".preview.localhost") if url.hostname else ""
    named = previews.parse_label(label)
    assert named is not None and named[0] == session_id
    token = named[1]

    # Straight to the control plane's address, as a browser resolving *.localhost would.
    site = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Host": f"{label}.preview.localhost:{port}"})
    page = site.get("/")
    assert page.status_code == 200 and "Hello from VibSDK" in page.text
    policy = page.headers["content-security-policy"]
    assert "sandbox" not in policy and f"frame-ancestors {stack.api_url}" in policy
    assert page.headers["cache-control"] == "no-store" and page.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in page.headers
    assert site.get("/index.html").text == page.text
    # A client route of a single-page app is the page; a missing file is not.
    assert site.get("/settings/profile").text == page.text
    assert site.get("/missing.js").status_code == 404
    head = site.head("/")
    assert head.status_code == 200 and head.content == b""
    assert site.post("/", json={}).status_code == 405

    # Nothing of the control plane answers under a preview's host: not the API, with a credential or without.
    wrong = previews.label_of(session_id, previews.new_token())
    hosts = (
        f"{wrong}.preview.localhost:{port}",
        f"nonsense.preview.localhost:{port}",
        f"a.{label}.preview.localhost:{port}",
        f"preview.localhost:{port}",  # the preview domain itself
        f"{wrong}.preview.localhost:",  # an empty port
        f"preview.localhost@127.0.0.1:{port}",  # no host name at all
    )
    for host in hosts:
        refused = site.get("/", headers={"Host": host})
        assert (refused.status_code, refused.json()["detail"]) == (404, NO_PREVIEW), host
        under = site.get("/api/agent", headers={"Host": host, "Authorization": api.headers["Authorization"]})
        assert (under.status_code, under.json()["detail"]) == (404, NO_PREVIEW), host
    # The API keeps its own hosts: 127.0.0.1 and localhost, beside the preview domain.
    own = site.get("/api/agent", headers={"Host": f"localhost:{port}", "Authorization": api.headers["Authorization"]})
    assert own.status_code == 200 and "sessions" in own.json()
    served = site.get("/api/agent", headers={"Authorization": api.headers["Authorization"]})
    assert served.text == page.text and "sessions" not in served.text
    assert site.get("/healthz").text == page.text and site.get("/dashboard").text == page.text

    # The path URL (the tunnel URL) still serves the preview, in its CSP sandbox.
    by_path = httpx.get(f"{stack.api_url}/preview/{session_id}/{token}/")
    # The same page, its reload script fetched from under the path (control_plane/live.py).
    base = f"/preview/{session_id}/{token}/"
    assert by_path.status_code == 200 and by_path.text == page.text.replace(
        '"/__vibesdk/', f'"{base}__vibesdk/'
    ).replace('data-base="/"', f'data-base="{base}"')
    assert by_path.headers["content-security-policy"].startswith("sandbox ")

    assert act(api, session_id, "shutdownInstance")["status"] == "succeeded"
    gone = site.get("/")
    assert (gone.status_code, gone.json()["detail"]) == (404, NO_PREVIEW)
    site.close()
