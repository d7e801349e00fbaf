"""Smoke test against any control plane: `python -m devstack.smoke --url URL` (`make smoke URL=...`).

Creates a session from a template, runs a command in it, and waits for both runs to succeed.
Exit code 0 only when they do; the token comes from --token or VIBESDK_API_TOKEN.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

from vibesdk_cli.progress import wait_for_run


def wait(client: httpx.Client, run_url: str, timeout: float) -> dict[str, Any]:
    """The run once it has ended, or as it is after `timeout` s."""
    return wait_for_run(lambda: client.get(run_url).raise_for_status().json(), timeout)


def smoke(url: str, token: str | None, template: str, timeout: float) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30) as client:
        started = time.monotonic()
        created = client.post("/api/agent", json={"templateName": template, "projectName": "smoke"})
        if created.status_code != 202:
            print(f"POST /api/agent answered {created.status_code}: {created.text}")
            return False
        queued = created.json()
        steps = [("createInstance", queued["runUrl"])]
        run = wait(client, queued["runUrl"], timeout)
        print(f"createInstance {run['status']} in {time.monotonic() - started:.1f} s")
        if run["status"] != "succeeded":
            print(f"  error: {run.get('error')}")
            return False
        started = time.monotonic()
        command = (
            client.post(
                f"/api/agent/{queued['sessionId']}/actions",
                json={"action": "executeCommands", "params": {"commands": ["ls"]}},
            )
            .raise_for_status()
            .json()
        )
        steps.append(("executeCommands", command["runUrl"]))
        run = wait(client, command["runUrl"], timeout)
        print(f"executeCommands {run['status']} in {time.monotonic() - started:.1f} s")
        if run["status"] != "succeeded":
            print(f"  error: {run.get('error')}")
            return False
        client.post(f"/api/agent/{queued['sessionId']}/actions", json={"action": "shutdownInstance"})
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="control plane URL")
    parser.add_argument("--token", default=os.environ.get("VIBESDK_API_TOKEN"), help="API token (VIBESDK_API_TOKEN)")
    parser.add_argument("--template", default="static-site")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each run")
    args = parser.parse_args()
    try:
        ok = smoke(args.url, args.token, args.template, args.timeout)
    except httpx.HTTPError as error:
        print(f"smoke test could not talk to {args.url}: {error}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
