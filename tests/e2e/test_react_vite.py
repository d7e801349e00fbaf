"""The react-vite template as an agent drives it: through the CLI and the API, to a preview in Chromium."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.test_clients import CHROMIUM_FLAGS, vibesdk
from tests.e2e.test_templates_flow import act

pytestmark = pytest.mark.e2e
GREETING = """type GreetingProps = { name: string }

export function Greeting({ name }: GreetingProps) {
  return <h1 id="greeting">{name} says MARKER</h1>
}
"""


def create(api: httpx.Client) -> str:
    from tests.e2e.conftest import wait_for_run

    created = api.post("/api/agent", json={"templateName": "react-vite"}).json()
    done = wait_for_run(api, created["runUrl"], timeout=300)
    assert done["status"] == "succeeded", done
    return str(created["sessionId"])


def load_in_chromium(url: str) -> tuple[str, list[dict[str, object]]]:
    """The page's rendered #greeting text, and what the browser's console logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "greeting"))
        return driver.find_element(By.ID, "greeting").text, driver.get_log("browser")
    finally:
        driver.quit()


@pytest.mark.skipif(not shutil.which("chromedriver"), reason="chromium-driver is not installed (make test installs it)")
def test_cli_create_write_analyse_deploy_gives_a_working_preview(stack: Stack, tmp_path: Path) -> None:
    created = vibesdk(stack, "create", "react-vite", "--project", "react")
    assert created.returncode == 0, created.stderr
    session = created.stdout.split()[1]
    marker = f"hello-{uuid.uuid4().hex[:8]}"
    component = tmp_path / "Greeting.tsx"
    component.write_text(GREETING.replace("MARKER", marker))
    written = vibesdk(stack, "write", session, f"{component}:src/components/Greeting.tsx")
    assert written.returncode == 0, written.stderr
    analysed = vibesdk(stack, "run", session, "runStaticAnalysisCode")
    assert analysed.returncode == 0, analysed.stdout + analysed.stderr
    deployed = vibesdk(stack, "run", session, "deployInstance")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    preview = vibesdk(stack, "preview", session)
    assert preview.returncode == 0
    url = preview.stdout.strip()

    # Each kind of file the build wrote is served with the type a browser insists on.
    page = httpx.get(url)
    assert page.headers["content-type"].startswith("text/html")
    script = page.text.split('src="./', 1)[1].split('"', 1)[0]
    served = httpx.get(url + script)
    assert served.headers["content-type"].startswith("text/javascript")
    assert httpx.get(url + script + ".map").headers["content-type"] == "application/json"
    assert httpx.get(url + "favicon.svg").headers["content-type"] == "image/svg+xml"

    text, console = load_in_chromium(url)
    assert text == f"React + Vite says {marker}"
    assert [entry for entry in console if entry.get("level") == "SEVERE"] == []


# A lint error (line 7: an effect's missing dependency) and a type error (line 8).
PLANTED = """import { useEffect, useState } from 'react'

export function Counter({ start }: { start: number }) {
  const [count, setCount] = useState(0)
  useEffect(() => {
    setCount(start)
  }, [])
  const label: number = 'count'
  return <p>{label}{count}</p>
}
"""


def test_analysis_finds_a_planted_lint_error_and_type_error_where_they_are(api: httpx.Client) -> None:
    session = create(api)
    planted = PLANTED
    written = act(
        api, session, "writeFiles", {"files": [{"filePath": "src/components/Counter.tsx", "fileContents": planted}]}
    )
    assert written["status"] == "succeeded", written
    analysis = act(api, session, "runStaticAnalysisCode")
    assert analysis["status"] == "succeeded", analysis
    lint, typecheck = analysis["result"]["lint"], analysis["result"]["typecheck"]
    assert [
        (i["filePath"], i["line"], i["column"], i["severity"], i["ruleId"], i["source"]) for i in lint["issues"]
    ] == [("src/components/Counter.tsx", 7, 6, "error", "react-hooks/exhaustive-deps", "eslint")]
    assert "missing dependency: 'start'" in lint["issues"][0]["message"]
    assert lint["summary"] == {"errorCount": 1, "warningCount": 0, "infoCount": 0}
    assert [
        (i["filePath"], i["line"], i["column"], i["severity"], i["ruleId"], i["source"]) for i in typecheck["issues"]
    ] == [("src/components/Counter.tsx", 8, 9, "error", "TS2322", "typescript")]
    assert typecheck["issues"][0]["message"] == "Type 'string' is not assignable to type 'number'."
    assert typecheck["summary"] == {"errorCount": 1, "warningCount": 0, "infoCount": 0}


def test_a_broken_import_is_reported_with_its_file_and_line(api: httpx.Client) -> None:
    session = create(api)
    app = (Path(__file__).resolve().parents[2] / "templates/react-vite/src/App.tsx").read_text()
    broken = app.replace("from '@/components/Greeting'", "from './components/Missing'")
    assert broken != app
    act(api, session, "writeFiles", {"files": [{"filePath": "src/App.tsx", "fileContents": broken}]})
    deployed = act(api, session, "deployInstance")
    assert deployed["status"] == "failed"
    assert 'Could not resolve "./components/Missing"' in deployed["error"]
    errors = act(api, session, "getInstanceErrors")["result"]
    assert errors["hasErrors"]
    found = [e for e in errors["errors"] if "Missing" in e["message"]]
    assert [(e["filePath"], e["line"], e["level"]) for e in found] == [("src/App.tsx", 2, 50)]
    assert found[0]["timestamp"] and found[0]["rawOutput"]
