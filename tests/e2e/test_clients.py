"""The command-line client, the dashboard in headless Chromium, and one run's correlated logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import TOKEN, wait_for_run, wait_until
from vibesdk_cli.locallogs import run_lines

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# Headless, and nothing that reaches beyond this machine (its network is closed).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def vibesdk(stack: Stack, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ) | {"VIBESDK_URL": stack.api_url, "VIBESDK_API_TOKEN": token, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vibesdk_cli", *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_cli_create_exec_write_deploy_preview(stack: Stack, tmp_path: Path) -> None:
    listed = vibesdk(stack, "templates")
    assert listed.returncode == 0 and "static-site" in listed.stdout

    created = vibesdk(stack, "create", "static-site", "--project", "cli")
    assert created.returncode == 0, created.stderr
    session = created.stdout.split()[1]
    assert [line.split()[-1] for line in created.stdout.splitlines() if line.startswith("  +")] == [
        "queued",
        "running",
        "succeeded",
    ]

    page = tmp_path / "index.html"
    page.write_text("<!doctype html><html><head><title>t</title></head><body>from the cli</body></html>\n")
    assert vibesdk(stack, "write", session, f"{page}:src/index.html").returncode == 0
    ran = vibesdk(stack, "exec", session, "cat src/index.html")
    assert ran.returncode == 0 and "from the cli" in ran.stdout
    # A live instance publishes its preview itself; deployInstance publishes the build again.
    assert vibesdk(stack, "run", session, "deployInstance").returncode == 0
    preview = vibesdk(stack, "preview", session)
    assert preview.returncode == 0 and "from the cli" in httpx.get(preview.stdout.strip()).text
    assert session in vibesdk(stack, "sessions").stdout


def test_cli_failures_exit_non_zero_with_the_servers_words(stack: Stack) -> None:
    created = vibesdk(stack, "create", "python-app", "--no-watch")
    session = created.stdout.split()[1]
    failed = vibesdk(stack, "exec", session, "echo broken >&2; exit 3")
    assert failed.returncode == 1 and "exited with code 3" in failed.stdout and "broken" in failed.stdout
    refused = vibesdk(stack, "sessions", token="wrong")
    assert refused.returncode == 1 and refused.stderr.startswith("error: 401") and "Traceback" not in refused.stderr
    unknown = vibesdk(stack, "status", "no-such-session")
    assert unknown.returncode == 1 and "error: 404" in unknown.stderr
    env = dict(os.environ) | {"PYTHONPATH": str(ROOT)}
    down = subprocess.run(
        [sys.executable, "-m", "vibesdk_cli", "--url", "http://127.0.0.1:9", "sessions"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert down.returncode == 2 and "cannot reach" in down.stderr and "Traceback" not in down.stderr


def recorded_lines(stack: Stack, run_id: str) -> list[dict[str, Any]]:
    """The run's lines once the status recorder has logged its last transition (its line follows
    the Firestore write that wait_for_run sees)."""

    def with_the_recorders_last() -> list[dict[str, Any]] | None:
        lines = run_lines(run_id, Path(stack.supervisor.log_dir))
        last = [
            line for line in lines if line.get("unit") == "status-recorder" and line["message"].startswith("succeeded")
        ]
        return lines if last else None

    return wait_until(with_the_recorders_last, f"the status recorder's line for run {run_id} succeeded")


def test_one_run_is_found_in_every_unit_by_one_trace(stack: Stack, api: httpx.Client) -> None:
    created = api.post("/api/agent", json={"templateName": "python-app"}).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    lines = recorded_lines(stack, created["runId"])
    units = {line["unit"] for line in lines}
    assert {"control-plane", "status-recorder"} <= units, lines
    assert units & set(stack.job_units), lines  # whichever job instance the router chose
    traces = {line.get("traceId") for line in lines}
    assert len(traces) == 1 and None not in traces
    for line in lines:
        assert line["severity"] in ("INFO", "WARNING", "ERROR") and line["sessionId"] == created["sessionId"]
        assert line["logging.googleapis.com/trace"] == f"projects/{stack.project}/traces/{line['traceId']}"
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "run-log-lines.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_trace_header_of_the_request_is_kept(stack: Stack, api: httpx.Client) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    created = api.post(
        "/api/agent", json={"templateName": "python-app"}, headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"}
    ).json()
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    assert {line.get("traceId") for line in recorded_lines(stack, created["runId"])} == {trace}


def chromium(width: int, height: int) -> Any:
    """A headless Chromium driven by chromedriver, its window `width` x `height`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS + (f"--window-size={width},{height}",):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


@pytest.mark.skipif(not shutil.which("chromedriver"), reason="chromium-driver is not installed (make test installs it)")
def test_dashboard_shows_a_run_reaching_succeeded(stack: Stack) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = chromium(1280, 900)
    try:
        driver.get(f"{stack.api_url}/dashboard#token={TOKEN}")
        # Elements are read inside waits: one redrawn while it was read is read again.
        wait = WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#template option"))
        Select(driver.find_element(By.ID, "template")).select_by_value("static-site")
        driver.find_element(By.ID, "project").send_keys("from the dashboard")
        driver.find_element(By.ID, "create-button").click()
        created = '#runs li.run[data-action="createInstance"]'
        wait.until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f'{created}[data-status="succeeded"]'))
        )
        steps = wait.until(
            lambda d: [step.text.split()[0] for step in d.find_elements(By.CSS_SELECTOR, f"{created} .timeline .step")]
        )
        assert steps == ["queued", "running", "succeeded"]
        driver.find_element(By.ID, "command-line").send_keys("npm run build --silent && ls dist")
        driver.find_element(By.CSS_SELECTOR, "#command button[type=submit]").click()
        command = '#runs li.run[data-action="executeCommands"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'{command}[data-status="succeeded"]'))
        assert "index.html" in wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"{command} pre").text)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    finally:
        driver.quit()


# The runs the test queued, not the live preview's rebuilds the job queued after them.
CLIENT_RUNS = '#runs li.run:not([data-action="refreshPreview"])'

# The session whose list item holds the focused button, if a session's button has the focus.
FOCUSED_SESSION = """
const focused = document.activeElement;
const item = focused && focused.tagName === "BUTTON" ? focused.closest("li[data-session]") : null;
return item ? item.dataset.session : null;
"""


def tab_to_session(driver: Any, session: str, presses: int = 200) -> None:
    """Tab from where the focus is until the session's button has it, then Enter, until the session
    opens. The page redraws a session's item when its status changes: an Enter that met a redrawn
    item opens nothing, and the tabbing goes on."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for _ in range(presses):
        if driver.execute_script(FOCUSED_SESSION) == session:
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            try:
                WebDriverWait(driver, 10, poll_frequency=0.05).until(
                    lambda d: session in d.find_element(By.ID, "detail-title").text
                )
                return
            except TimeoutException:
                pass
        ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"{presses} presses of Tab never opened session {session} from the keyboard")


def press_enter(driver: Any, css: str, until: Callable[[Any], object], what: str, tries: int = 6) -> None:
    """Enter on the element `css` names until `until` holds. The page redraws what changed as it
    refreshes (every second): the element may be replaced under the key (stale), or what it showed
    redrawn away before it was read; it is pressed again then."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    for _ in range(tries):
        try:
            driver.find_element(By.CSS_SELECTOR, css).send_keys(Keys.ENTER)
            WebDriverWait(driver, 10, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)).until(
                until
            )
            return
        except (StaleElementReferenceException, TimeoutException):
            continue
    raise AssertionError(f"Enter on {css} never showed {what} ({tries} tries)")


@pytest.mark.skipif(not shutil.which("chromedriver"), reason="chromium-driver is not installed (make test installs it)")
@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)], ids=["desktop", "phone"])
def test_dashboard_shows_what_a_session_did(stack: Stack, api: httpx.Client, width: int, height: int) -> None:
    """One page per session: runs with their output, files, static-analysis issues and the preview, live."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    marker = f"Made in the dashboard test {uuid.uuid4().hex[:6]}"
    page = f'<!doctype html><html lang="en"><head><title>t</title></head><body>\n<img src="a.png">\n<p>{marker}</p>\n</body></html>\n'
    created = api.post("/api/agent", json={"templateName": "static-site", "projectName": f"dash-{width}"}).json()
    session = created["sessionId"]
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    for action, params in (
        ("writeFiles", {"files": [{"filePath": "src/index.html", "fileContents": page}]}),
        ("executeCommands", {"commands": ["echo built-by-the-test"]}),
        ("runStaticAnalysisCode", {}),
        ("deployInstance", {}),
    ):
        queued = api.post(f"/api/agent/{session}/actions", json={"action": action, "params": params}).json()
        assert wait_for_run(api, queued["runUrl"], timeout=120)["status"] == "succeeded", action

    driver = chromium(width, height)
    try:
        driver.get(f"{stack.api_url}/dashboard#token={TOKEN}")
        # The page redraws what changed as it refreshes: every element is found afresh inside a
        # wait, and one that went stale while it was read is read again.
        wait = WebDriverWait(driver, 60, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        # The keyboard alone: from the top of the page, tab to the session's button, Enter.
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'li[data-session="{session}"] button'))
        tab_to_session(driver, session)
        timelines = wait.until(
            lambda d: (
                [
                    [s.text.split()[0] for s in run.find_elements(By.CSS_SELECTOR, ".timeline .step")]
                    for run in d.find_elements(By.CSS_SELECTOR, CLIENT_RUNS)
                ]
                if len(d.find_elements(By.CSS_SELECTOR, CLIENT_RUNS)) == 5
                else None
            )
        )
        assert timelines == [["queued", "running", "succeeded"]] * 5
        assert "built-by-the-test" in wait.until(lambda d: d.find_element(By.ID, "runs").text)
        press_enter(  # the whole output, through the API
            driver,
            "#runs button.show-log",
            lambda d: "built-by-the-test" in d.find_element(By.CSS_SELECTOR, "#runs pre.full-log").text,
            "the command's whole output",
        )
        rows = wait.until(
            lambda d: [row.text for row in d.find_elements(By.CSS_SELECTOR, '#analysis tbody tr[data-kind="lint"]')]
        )
        assert 'missing required "alt" attribute' in rows[0] and "src/index.html" in rows[0]
        frame = wait.until(
            lambda d: (
                d.find_element(By.ID, "preview-frame")
                if d.find_element(By.ID, "preview-frame").get_attribute("src")
                else None
            )
        )
        # The local stack serves previews by host: framed with their own origin, localStorage works.
        assert frame.get_attribute("sandbox").split() == ["allow-scripts", "allow-forms", "allow-same-origin"]
        driver.switch_to.frame(frame)
        wait.until(lambda d: marker in d.find_element(By.TAG_NAME, "body").text)
        assert driver.execute_script("localStorage.setItem('k', 'v'); return localStorage.getItem('k')") == "v"
        driver.switch_to.default_content()
        driver.find_element(By.ID, "list-files").send_keys(Keys.ENTER)  # a getFiles run, live
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'button.file[data-file="src/index.html"]'))
        press_enter(
            driver,
            'button.file[data-file="src/index.html"]',
            lambda d: marker in d.find_element(By.ID, "file-view").text,
            "the file's contents",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"dashboard-session-{width}x{height}.png"))
    finally:
        driver.quit()


# Focus and open the full log of a run's command, the way a keyboard user's Enter does, in one step
# that no refresh can come between; the run's item and the button, for later comparison.
OPEN_LOG = """
const button = document.querySelector(arguments[0] + " button.show-log");
if (!button) return null;
button.focus();
button.click();
return [button.closest("li.run"), button];
"""
CLICK = "const node = document.querySelector(arguments[0]); if (node) node.click(); return Boolean(node);"


@pytest.mark.skipif(not shutil.which("chromedriver"), reason="chromium-driver is not installed (make test installs it)")
def test_dashboard_keeps_what_did_not_change(stack: Stack, api: httpx.Client) -> None:
    """A refresh draws again only what changed: a finished run keeps its node, the focus on its
    button and its opened full log while refreshes go by, a new run's arrival among them."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    created = api.post("/api/agent", json={"templateName": "static-site", "projectName": "kept"}).json()
    session = created["sessionId"]
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"

    def run_command(line: str) -> str:
        queued = api.post(
            f"/api/agent/{session}/actions", json={"action": "executeCommands", "params": {"commands": [line]}}
        ).json()
        assert wait_for_run(api, queued["runUrl"], timeout=120)["status"] == "succeeded", line
        return str(queued["runId"])

    finished = f'#runs li.run[data-run="{run_command("echo kept-by-the-dashboard")}"]'
    driver = chromium(1280, 800)
    try:
        driver.get(f"{stack.api_url}/dashboard#token={TOKEN}")
        wait = WebDriverWait(driver, 60, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: d.execute_script(CLICK, f'li[data-session="{session}"] button'))
        item, button = wait.until(lambda d: d.execute_script(OPEN_LOG, finished))
        focused_at = time.monotonic()
        wait.until(
            lambda d: "kept-by-the-dashboard" in d.find_element(By.CSS_SELECTOR, f"{finished} pre.full-log").text
        )

        # Refreshes go by: a new run, which the page learns of only by refreshing, then more than two
        # refresh periods since the focus.
        newer = run_command("echo a-newer-run")
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f'#runs li.run[data-run="{newer}"][data-status="succeeded"]')
        )
        time.sleep(max(0.0, focused_at + 2.5 - time.monotonic()))

        assert driver.find_element(By.CSS_SELECTOR, finished) == item, "the finished run's node was drawn again"
        assert driver.execute_script("return document.activeElement") == button, "the focus was lost"
        assert button.text == "Full log of echo kept-by-the-dashboard"  # not stale: still in the page
        assert "kept-by-the-dashboard" in item.find_element(By.CSS_SELECTOR, "pre.full-log").text
    finally:
        driver.quit()
