"""infra/gcp grants each unit exactly the Google permissions its code uses: nothing missing, nothing broader.

What a unit uses is not listed by hand: the adapters note every permission they exercise
(vibesdk_gcp/access.py) while this test drives every action through the running stack; the grants
are read from infra/gcp. Emulators enforce no IAM, so this is what stands in for Google's denials.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.stack import Stack
from tests.e2e.conftest import wait_for_run
from vibesdk_gcp import access, clients
from vibesdk_gcp.names import BUCKETS, DEAD_LETTER_TOPIC, REQUESTS_TOPIC, STATUS_TOPIC
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import SandboxRequest, utcnow
from vibesdk_gcp.settings import Settings

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MAIN_TF = ROOT / "infra" / "gcp" / "main.tf"
# unit -> the service account it runs as; every instance of the sandbox job runs as its one account.
ACCOUNTS = {
    "control-plane": "vibesdk-control-plane",
    "sandbox-job": "vibesdk-sandbox-job",
    "status-recorder": "vibesdk-status-recorder",
    "sweeper": "vibesdk-sweeper",
}
JOB_ACCOUNT = ACCOUNTS["sandbox-job"]
# What each predefined role allows, of the permissions the code uses (IAM's roles reference).
ROLE_PERMISSIONS = {
    "roles/storage.objectViewer": {access.OBJECT_GET, access.OBJECT_LIST},
    "roles/storage.objectCreator": {access.OBJECT_CREATE},
    "roles/storage.objectUser": {access.OBJECT_GET, access.OBJECT_LIST, access.OBJECT_CREATE, access.OBJECT_DELETE},
    "roles/pubsub.publisher": {access.PUBLISH},
    "roles/datastore.viewer": {access.FIRESTORE_READ, access.FIRESTORE_LIST},
    "roles/datastore.user": {access.FIRESTORE_READ, access.FIRESTORE_LIST, access.FIRESTORE_WRITE},
}
# Grants the code does not exercise, each with why it stays.
EXCEPTIONS: dict[tuple[str, str, str], str] = {}


def grants() -> dict[str, set[tuple[str, str]]]:
    """account -> {(role, resource)}: project roles (resource "(default)"), bucket and topic bindings."""
    text = MAIN_TF.read_text()
    found: dict[str, set[tuple[str, str]]] = {account: set() for account in ACCOUNTS.values()}
    iam = text[text.index('module "iam"') : text.index('module "storage"')]
    for account, body in re.findall(r'"(vibesdk-[a-z-]+)" = \{(.*?)\n    \}', iam, re.S):
        for role in re.findall(r'"(roles/[^"]+)"', body):
            found.setdefault(account, set()).add((role, access.DATABASE))
    bucket_names = {name.split("-", 1)[1]: name for name in BUCKETS}
    for bucket, role, account in re.findall(
        r'bucket = local\.buckets\.(\w+), role = "([^"]+)", member = module\.iam\.members\["([^"]+)"\]', text
    ):
        found.setdefault(account, set()).add((role, bucket_names[bucket]))
    topics = {"requests": REQUESTS_TOPIC, "status": STATUS_TOPIC, "dead_letter": DEAD_LETTER_TOPIC}
    for topic, account in re.findall(
        r'topic = local\.definitions\.topics\.(\w+), member = module\.iam\.members\["([^"]+)"\]', text
    ):
        found.setdefault(account, set()).add(("roles/pubsub.publisher", topics[topic]))
    return found


def drive_every_action(api: httpx.Client, stack: Stack) -> None:
    assert api.get("/api/templates").status_code == 200
    created = api.post("/api/agent", json={"templateName": "static-site"}).json()
    session = created["sessionId"]
    assert wait_for_run(api, created["runUrl"])["status"] == "succeeded"
    steps = [
        ("writeFiles", {"files": [{"filePath": "src/note.txt", "fileContents": "x"}]}),
        ("getFiles", {"filePaths": ["src/note.txt"]}),
        ("executeCommands", {"commands": ["echo hello"]}),
        ("getLogs", {}),
        ("runStaticAnalysisCode", {}),
        ("deployInstance", {}),
        ("listAllInstances", {}),
        ("getInstanceDetails", {}),
        ("clearLogs", {}),
    ]
    for action, params in steps:
        queued = api.post(f"/api/agent/{session}/actions", json={"action": action, "params": params}).json()
        run = wait_for_run(api, queued["runUrl"], timeout=120)
        assert run["status"] == "succeeded", (action, run.get("error"))
        if action == "deployInstance":
            assert httpx.get(run["result"]["previewUrl"]).status_code == 200
        if action == "executeCommands":  # a command's whole output, through the API
            log = run["result"]["results"][0]["log"]
            assert api.get(f"/api/agent/{session}/log", params={"name": log}).text == "hello\n"
    # What the API adds beside the actions: a wait and an events stream (Firestore listeners), the
    # runner protocol's reads, writes and rename, a preview served by its host.
    queued = api.post(f"/api/agent/{session}/actions", json={"action": "getFiles", "params": {}}).json()
    assert api.get(queued["runUrl"], params={"wait": 30}, timeout=40).json()["status"] == "succeeded"
    with api.stream("GET", f"/api/agent/{session}/events") as events:
        assert events.status_code == 200 and next(events.iter_lines()).startswith("id: ")
    runner = {"Content-Type": "application/json", "x-session-id": "iam"}
    assert api.get(f"/runner/instances/{session}/status", headers=runner).json()["isHealthy"] is True
    assert api.post(f"/runner/instances/{session}/commands", json={"commands": ["true"]}, headers=runner).json()[
        "success"
    ]
    assert api.post(f"/runner/instances/{session}/name", json={"projectName": "iam"}, headers=runner).json() is True
    deployed = api.post(f"/runner/instances/{session}/deploy", headers=runner).json()
    assert httpx.get(deployed["deployedUrl"]).status_code == 200, deployed
    assert api.get("/runner/instances", headers=runner).json()["success"] is True
    queued = api.post(f"/api/agent/{session}/actions", json={"action": "shutdownInstance", "params": {}}).json()
    assert wait_for_run(api, queued["runUrl"])["status"] == "succeeded"
    # Poison on both topics: the job and the recorder set them aside on the dead-letter topic.
    publisher = clients.publisher_client(stack_settings(stack))
    marker = uuid.uuid4().hex
    publisher.publish(publisher.topic_path(stack.project, REQUESTS_TOPIC), b"not json " + marker.encode()).result()
    publisher.publish(publisher.topic_path(stack.project, STATUS_TOPIC), b"not json " + marker.encode()).result()
    # The sweeper, started as Cloud Scheduler starts it (a process of its own), with a run to end:
    # one queued but never published, and a queue timeout that has passed for it.
    store = RunStore(clients.firestore_client(stack_settings(stack)))
    orphan = SandboxRequest(
        sessionId=str(uuid.uuid4()), runId=str(uuid.uuid4()), action="getFiles", issuedAt=utcnow(), owner="local"
    )
    store.queue_run(orphan, new_session=True)
    time.sleep(1.1)
    env = stack.env | {
        "VIBESDK_UNIT": "sweeper",
        "VIBESDK_ACCESS_DIR": access_dir(stack),
        "VIBESDK_QUEUE_TIMEOUT_SECONDS": "1",
    }
    script = (
        "from functions.context import Context; from functions.sweeper import sweep; "
        "from vibesdk_gcp.settings import Settings; sweep(Context.from_settings(Settings.from_env()))"
    )
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True, timeout=60)
    assert store.get_run(orphan.sessionId, orphan.runId).status == "failed"


def stack_settings(stack: Stack) -> Settings:
    return Settings.from_env(stack.env)


def access_dir(stack: Stack) -> str:
    return stack.env.get("VIBESDK_ACCESS_DIR") or os.environ["VIBESDK_ACCESS_DIR"]


def units_of(stack: Stack) -> dict[str, list[str]]:
    """account -> the units that run as it: the job's account is every job instance's."""
    units: dict[str, list[str]] = {}
    for unit, account in ACCOUNTS.items():
        units.setdefault(account, []).extend(stack.job_units if account == JOB_ACCOUNT else [unit])
    return units


def used_by(stack: Stack, account: str) -> set[tuple[str, str]]:
    """What the account's units used, together: the router sends a request to any job instance."""
    directory = Path(access_dir(stack))
    return set().union(*(access.used(directory, unit) for unit in units_of(stack)[account]))


def wait_for_dead_letters(stack: Stack) -> None:
    deadline = time.monotonic() + 30
    wanted = [JOB_ACCOUNT, ACCOUNTS["status-recorder"]]
    while time.monotonic() < deadline:
        if all((access.PUBLISH, DEAD_LETTER_TOPIC) in used_by(stack, account) for account in wanted):
            return
        time.sleep(0.2)


def test_each_unit_is_granted_exactly_what_its_code_uses(api: httpx.Client, stack: Stack) -> None:
    drive_every_action(api, stack)
    wait_for_dead_letters(stack)
    granted = grants()
    missing, broader = [], []
    for account, units in units_of(stack).items():
        used = used_by(stack, account)
        assert used, f"{', '.join(units)} noted no Google call at all"
        for permission, resource in sorted(used):
            if not any(
                resource == where and permission in ROLE_PERMISSIONS.get(role, set())
                for role, where in granted[account]
            ):
                missing.append(f"{account} uses {permission} on {resource}")
        for role, resource in sorted(granted[account]):
            needed = {permission for permission, where in used if where == resource}
            allowed = ROLE_PERMISSIONS.get(role)
            if allowed is None or not needed & allowed:
                if (account, role, resource) not in EXCEPTIONS:
                    broader.append(f"{account} holds {role} on {resource}, and uses none of it")
                continue
            narrower = [other for other, perms in ROLE_PERMISSIONS.items() if needed <= perms < allowed]
            if narrower and (account, role, resource) not in EXCEPTIONS:
                broader.append(f"{account} holds {role} on {resource}; {narrower[0]} would do ({sorted(needed)})")
    print("\n".join(f"{account}: {sorted(used_by(stack, account))}" for account in units_of(stack)))
    assert missing == []
    assert broader == []
