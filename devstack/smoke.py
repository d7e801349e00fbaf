"""Smoke test against any control plane: `python -m devstack.smoke --url URL` (`make smoke URL=...`).

Creates a session from a template, waits for it, then runs the isolation canary in it
(devstack/canary.py: one line per probe) and shuts it down. Exit code 0 only when the session
was created and every probe behaved; the token comes from --token or VIBESDK_API_TOKEN, the
project whose Firestore a command must not reach from --project or GOOGLE_CLOUD_PROJECT.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import IO

from devstack.canary import run_canary
from devstack.canary_probes import probes
from vibesdk_cli.client import Client, ClientError
from vibesdk_cli.progress import until_ended


def smoke(url: str, token: str | None, template: str, project: str, timeout: float, out: IO[str] = sys.stdout) -> bool:
    client = Client(url, token)
    try:
        started = time.monotonic()
        queued = client.create(template, "smoke", {})
        session = queued["sessionId"]
        run = until_ended(client, session, queued["runId"], timeout)
        out.write(f"createInstance {run['status']} in {time.monotonic() - started:.1f} s\n")
        if run["status"] != "succeeded":
            out.write(f"  error: {run.get('error')}\n")
            return False
        try:
            return not run_canary(client, session, probes(client.url, project), out, timeout)
        finally:
            client.act(session, "shutdownInstance", {})
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="control plane URL")
    parser.add_argument("--token", default=os.environ.get("VIBESDK_API_TOKEN"), help="API token (VIBESDK_API_TOKEN)")
    parser.add_argument("--template", default="static-site")
    parser.add_argument(
        "--project", default=os.environ.get("GOOGLE_CLOUD_PROJECT", "vibesdk-local"), help="GOOGLE_CLOUD_PROJECT"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the session, then for the canary")
    args = parser.parse_args()
    try:
        ok = smoke(args.url, args.token, args.template, args.project, args.timeout)
    except ClientError as error:
        print(f"smoke test could not talk to {args.url}: {error}")
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
