"""`python -m devstack` (what `make dev` runs): the whole stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

from devstack.stack import start_stack
from vibesdk_gcp.errors import ConfigurationError


def main() -> int:
    stop = threading.Event()
    for stop_signal in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(stop_signal, lambda *_: stop.set())
    print(
        "starting the local stack: emulators, sandbox job, status recorder, Eventarc router, control plane", flush=True
    )
    try:
        stack = start_stack()
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if stop.is_set():  # asked to stop while starting: nothing is left behind either way
        print("stopping...", flush=True)
        stack.stop()
        return 0
    ports = stack.ports
    print(
        f"""
VibSDK on emulators, project {stack.project}
  control plane     {ports.url("control_plane")}   (OpenAPI: {ports.url("control_plane")}/openapi.json)
  sandbox job       {", ".join(stack.job_url(i) for i in range(stack.job_count))}   ({stack.job_count} instances, functions-framework, target sandbox_job)
  status recorder   {ports.url("status_recorder")}   (functions-framework, target status_recorder)
  eventarc router   {ports.url("eventarc_router")}
  Pub/Sub emulator  {stack.env["PUBSUB_EMULATOR_HOST"]}   {stack.origins["pubsub"]}
  Firestore emul.   {stack.env["FIRESTORE_EMULATOR_HOST"]}   {stack.origins["firestore"]}
  Storage emulator  {stack.env["STORAGE_EMULATOR_HOST"]}
  logs              {stack.supervisor.log_dir}

  export VIBESDK_API_TOKEN={stack.token}

Ctrl-C stops everything.""",
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            gone = stack.supervisor.exited()
            if gone is not None:
                print(f"error: {gone.name} exited with code {gone.process.returncode}; see {gone.log}", file=sys.stderr)
                return 1
    finally:
        print("stopping...", flush=True)
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
