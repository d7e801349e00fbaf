"""Live previews in headless Chromium: a write shows in an open page without a reload, a broken
build keeps the last good version, the page's errors become the instance's runtime errors."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import wait_for_run, wait_until
from tests.e2e.test_clients import chromium
from tests.e2e.test_react_vite import create
from tests.e2e.test_templates_flow import act
from tests.vibesdk_schemas import assert_valid

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not shutil.which("chromedriver"), reason="chromium-driver is not installed (make test installs it)"
    ),
]
APP = (Path(__file__).resolve().parents[2] / "templates/react-vite/src/App.tsx").read_text()


def app_saying(text: str, extra: str = "") -> str:
    return f"""{extra}
export default function App() {{
  return <main><h1 id="said">{text}</h1></main>
}}
"""


def published(api: httpx.Client, session: str, after: int = 0) -> dict[str, Any] | None:
    """The session's published preview once its version is past `after`."""
    preview = api.get(f"/api/agent/{session}").json().get("preview") or {}
    return preview if (preview.get("version") or 0) > after else None


def urls(api: httpx.Client, session: str) -> tuple[str, str]:
    """(previewURL by host, tunnelURL by path), as VibSDK's runner client reads them."""
    status = api.get(f"/runner/instances/{session}/status", headers={"x-session-id": "live"}).json()
    return status["previewURL"], status["tunnelURL"]


def write(api: httpx.Client, session: str, path: str, contents: str) -> None:
    run = act(api, session, "writeFiles", {"files": [{"filePath": path, "fileContents": contents}]})
    assert run["status"] == "succeeded", run


def said(driver: Any) -> str | None:
    """The page's heading, read in one script: the page reloads itself on a new version, and an
    element found before a reload is stale after it (a stale read or a script cut by the unload
    means the new page is still on its way)."""
    from selenium.common.exceptions import JavascriptException, StaleElementReferenceException

    try:
        return driver.execute_script("const said = document.getElementById('said'); return said && said.textContent")
    except (JavascriptException, StaleElementReferenceException):
        return None


@pytest.fixture
def browser() -> Iterator[Any]:
    driver = chromium(1024, 768)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def session(api: httpx.Client) -> str:
    """A react-vite instance, its first version published (a live instance builds it by itself)."""
    session = create(api)
    wait_until(lambda: published(api, session), "the first version of the preview", timeout=120)
    return session


def test_a_write_shows_in_the_open_preview_without_a_reload(api: httpx.Client, session: str, browser: Any) -> None:
    host_url, _ = urls(api, session)
    first = f"first-{uuid.uuid4().hex[:6]}"
    write(api, session, "src/App.tsx", app_saying(first))
    browser.get(host_url)
    wait_until(lambda: said(browser) == first, f"{first!r} in the page", timeout=90)
    then = f"then-{uuid.uuid4().hex[:6]}"
    write(api, session, "src/App.tsx", app_saying(then))
    # The test never reloads: the page's own script does, on the new version.
    wait_until(lambda: said(browser) == then, f"{then!r} in the open page", timeout=90)


def test_a_broken_import_keeps_the_last_good_version_and_reports_its_file_and_line(
    api: httpx.Client, session: str
) -> None:
    host_url, _ = urls(api, session)
    good = f"good-{uuid.uuid4().hex[:6]}"
    write(api, session, "src/App.tsx", app_saying(good))
    version = wait_until(lambda: _showing(host_url, good), "the good version")
    write(api, session, "src/App.tsx", app_saying("broken", "import { Gone } from './components/Gone'\nvoid Gone"))
    errors = wait_until(
        lambda: [e for e in act(api, session, "getInstanceErrors")["result"]["errors"] if "Gone" in e["message"]],
        "the build error in getInstanceErrors",
    )
    assert [(e["filePath"], e["line"], e["level"]) for e in errors] == [("src/App.tsx", 1, 50)], errors
    assert (published(api, session) or {})["version"] == version  # nothing newer was published
    assert _showing(host_url, good) == version  # the good version is still served
    act(api, session, "clearInstanceErrors")


def _showing(url: str, text: str) -> int | None:
    """The version the preview serves, once its app's bundle says `text`."""
    page = httpx.get(url).text
    if 'data-version="' not in page:
        return None
    version = int(page.split('data-version="', 1)[1].split('"', 1)[0])
    scripts = [part.split('"', 1)[0] for part in page.split('src="')[1:]]
    bundles = [src for src in scripts if src.endswith(".js") and "__vibesdk" not in src]
    base = url.rstrip("/") + "/"
    return version if any(text in httpx.get(base + src.removeprefix("./")).text for src in bundles) else None


def test_a_component_that_throws_in_the_browser_is_a_runtime_error(
    api: httpx.Client, session: str, browser: Any
) -> None:
    marker = f"boom-{uuid.uuid4().hex[:6]}"
    thrower = f"""import {{ useEffect }} from 'react'

export default function App() {{
  useEffect(() => {{ throw new Error('{marker}') }}, [])
  return <main><h1 id="said">{marker}</h1></main>
}}
"""
    act(api, session, "clearInstanceErrors")
    write(api, session, "src/App.tsx", thrower)
    _, tunnel_url = urls(api, session)
    # By path: a sandboxed page (an opaque origin) reports too.
    wait_until(lambda: _showing(tunnel_url, marker), "the throwing version")
    browser.get(tunnel_url)
    errors = wait_until(
        lambda: [e for e in act(api, session, "getInstanceErrors")["result"]["errors"] if marker in e["message"]],
        "the browser's error in getInstanceErrors",
    )
    assert all(error["level"] == 50 and error["source"] == "browser" for error in errors), errors
    # window.onerror's, with where: the bundle's path in the preview and its line.
    thrown = [error for error in errors if error["rawOutput"].startswith("[error]")]
    assert thrown and thrown[0]["filePath"].startswith("assets/") and thrown[0]["line"], errors
    cleared = act(api, session, "clearInstanceErrors")
    assert cleared["result"]["cleared"] >= 1
    assert act(api, session, "getInstanceErrors")["result"]["errors"] == []


def test_local_storage_works_in_a_preview_on_its_own_host(api: httpx.Client, session: str, browser: Any) -> None:
    stored = f"kept-{uuid.uuid4().hex[:6]}"
    app = f"""export default function App() {{
  localStorage.setItem('note', '{stored}')
  return <main><h1 id="said">{{localStorage.getItem('note')}}</h1></main>
}}
"""
    write(api, session, "src/App.tsx", app)
    host_url, _ = urls(api, session)
    wait_until(lambda: _showing(host_url, stored), "the localStorage version")
    browser.get(host_url)
    wait_until(lambda: said(browser) == stored, "the stored note in the page")
    assert browser.execute_script("return localStorage.getItem('note')") == stored


class Hooks(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        length = int(self.headers.get("content-length", "0"))
        Hooks.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """A webhook receiver on loopback (the local stack turns VIBESDK_WEBHOOK_LOOPBACK on)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hooks.received = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_webhook_gets_each_runtime_error_once_in_vibesdks_shape(api: httpx.Client, receiver: str) -> None:
    created = api.post("/api/agent", json={"templateName": "react-vite", "params": {"webhookUrl": receiver}}).json()
    assert wait_for_run(api, created["runUrl"], timeout=300)["status"] == "succeeded"
    session = created["sessionId"]
    broken = app_saying("broken", "import { Gone } from './components/Gone'\nvoid Gone")
    for contents in (broken, broken + "// the same error again\n"):
        write(api, session, "src/App.tsx", contents)
        wait_until(
            lambda: [e for e in act(api, session, "getInstanceErrors")["result"]["errors"] if "Gone" in e["message"]],
            "the build error",
        )
    wait_until(lambda: Hooks.received, "the runtime_error webhook")
    found = [hook for hook in Hooks.received if "Gone" in hook["payload"]["error"]["message"]]
    assert len(found) == 1, Hooks.received  # once per error, however often it is seen
    assert found[0]["eventType"] == "runtime_error" and found[0]["instanceId"] == session
    assert_valid("WebhookRuntimeErrorEvent", found[0])
