"""Starts the whole local stack, as `make dev` and the end-to-end tests do."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack import emulators
from devstack.config import HOST, PORTS, Ports, job_instances, job_unit
from devstack.processes import Supervisor
from devstack.provision import provision_buckets, provision_pubsub
from devstack.templates import upload_templates
from eventarc.router import delivery_mode, destination_env_key
from vibesdk_gcp import clients
from vibesdk_gcp.errors import ConfigurationError
from vibesdk_gcp.names import CONTROL_PLANE_SERVICE, ENTRY_POINTS, SANDBOX_JOB_SERVICE, STATUS_RECORDER_SERVICE
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import storage_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    ports: Ports
    project: str
    token: str
    supervisor: Supervisor
    env: dict[str, str] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    job_count: int = 1

    @property
    def api_url(self) -> str:
        return self.ports.url("control_plane")

    @property
    def job_units(self) -> list[str]:
        """The sandbox job's instances, as the supervisor names them: sandbox-job, sandbox-job-2, ..."""
        return [job_unit(index) for index in range(self.job_count)]

    def job_url(self, index: int = 0) -> str:
        return f"http://{HOST}:{self.ports.job_port(index)}"

    def job_root(self, index: int = 0) -> Path:
        """Where job instance `index` keeps its working copies: its own disk, as on Cloud Run."""
        return job_workspace_root(self.env["VIBESDK_WORKSPACE_ROOT"], index)

    def stop(self) -> None:
        self.supervisor.stop()


def _local(entry_point: list[str], port: int) -> list[str]:
    """A Cloud Run entry point as run here: this virtual environment's programs, on a local port."""
    program, *args = entry_point
    if program == "python":
        return [sys.executable, *args]  # reads HOST and PORT from the environment
    return [str(BIN / program), *args, "--host", HOST, "--port", str(port)]


def job_workspace_root(root: str, index: int) -> Path:
    """The first instance's root is the one configured; each other instance has one of its own beside it."""
    return Path(root) if index == 0 else Path(f"{root}-{index + 1}")


def check_ports_free(ports: Ports, job_count: int = 1) -> None:
    """Fail before starting anything when a port is taken (another `make dev`, say), naming it."""
    wanted = [(getattr(ports, attribute), attribute.replace("_", " "), variable) for attribute, variable, _ in PORTS]
    wanted += [(ports.job_port(index), job_unit(index), "VIBESDK_SANDBOX_JOB_PORT") for index in range(1, job_count)]
    for port, what, variable in wanted:
        if not port:
            continue
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                raise ConfigurationError(f"port {port} ({what}) is in use: stop what listens there or set {variable}")


def emulator_env(ports: Ports) -> dict[str, str]:
    return {
        "PUBSUB_EMULATOR_HOST": f"{HOST}:{ports.pubsub}",
        "FIRESTORE_EMULATOR_HOST": f"{HOST}:{ports.firestore}",
        "STORAGE_EMULATOR_HOST": f"http://{HOST}:{ports.storage}",
    }


def start_emulators(supervisor: Supervisor, ports: Ports, env: Mapping[str, str]) -> dict[str, str]:
    """Pub/Sub, Firestore and Cloud Storage emulators; returns where each Google one came from."""
    child_env = dict(env)
    origins = {}
    pubsub = emulators.find(emulators.PUBSUB, env)
    firestore = emulators.find(emulators.FIRESTORE, env)
    started = [
        (
            supervisor.start(
                "pubsub-emulator",
                emulators.command(emulators.PUBSUB, pubsub, HOST, ports.pubsub, env),
                child_env,
                PROJECT_ROOT,
            ),
            ports.pubsub,
        ),
        (
            supervisor.start(
                "firestore-emulator",
                emulators.command(emulators.FIRESTORE, firestore, HOST, ports.firestore, env),
                child_env,
                PROJECT_ROOT,
            ),
            ports.firestore,
        ),
        (
            supervisor.start(
                "storage-emulator",
                [sys.executable, "-m", "devstack.storage_emulator", "--host", HOST, "--port", str(ports.storage)],
                child_env,
                PROJECT_ROOT,
            ),
            ports.storage,
        ),
    ]
    origins["pubsub"] = f"{pubsub.jar} ({pubsub.origin})"
    origins["firestore"] = f"{firestore.jar} ({firestore.origin})"
    java = {"pubsub-emulator", "firestore-emulator"}
    for child, port in started:
        try:
            supervisor.wait_for_port(child, HOST, port)
        except ConfigurationError as error:
            if child.name not in java:
                raise
            options = " ".join(emulators.jvm_options(env))
            raise ConfigurationError(f"{error}\n(JVM options {options!r}, from VIBESDK_EMULATOR_JVM_OPTIONS)") from None
    return origins


def start_stack(ports: Ports | None = None, env: Mapping[str, str] | None = None, log_dir: Path | None = None) -> Stack:
    """Emulators, provisioning, then the four processes; stops what it started if any step fails."""
    base = dict(os.environ if env is None else env)
    ports = ports or Ports.from_env(base)
    project = base.get("GOOGLE_CLOUD_PROJECT") or Settings.from_env({}).project
    token = base.get("VIBESDK_API_TOKEN") or secrets.token_urlsafe(24)
    job_count = job_instances(base)
    check_ports_free(ports, job_count)
    supervisor = Supervisor(log_dir or PROJECT_ROOT / ".devstack" / "logs")
    stack = Stack(ports, project, token, supervisor, job_count=job_count)
    try:
        common = (
            base
            | emulator_env(ports)
            | {
                "GOOGLE_CLOUD_PROJECT": project,
                "PYTHONPATH": str(PROJECT_ROOT),
                "PYTHONUNBUFFERED": "1",
                "VIBESDK_API_TOKEN": token,
                "VIBESDK_PUBLIC_URL": ports.url("control_plane"),
                # Every instance's share of an owner's actions is counted against all of them (functions/fairness.py).
                "VIBESDK_JOB_INSTANCES": str(job_count),
                # Previews by host, one origin each, as VibSDK links them: browsers resolve *.localhost
                # to loopback. A domain of their own (the domain itself is a preview's host too), so the
                # API stays on localhost and 127.0.0.1. An empty VIBESDK_PREVIEW_DOMAIN: previews by path only.
                "VIBESDK_PREVIEW_DOMAIN": base.get(
                    "VIBESDK_PREVIEW_DOMAIN", f"preview.localhost:{ports.control_plane}"
                ),
                # The emulator's pushes carry no token: verification is a Google Cloud matter.
                "VIBESDK_VERIFY_PUSH": "false",
                # Webhook receivers here listen on loopback (a local VibSDK, the tests): never on Google Cloud.
                "VIBESDK_WEBHOOK_LOOPBACK": "true",
                # Under the system temp folder: the sandbox's unprivileged uid must be able to reach it.
                "VIBESDK_WORKSPACE_ROOT": base.get("VIBESDK_WORKSPACE_ROOT")
                or str(Path(tempfile.gettempdir()) / f"vibesdk-workspaces-{ports.sandbox_job}"),
            }
        )
        stack.env = common
        stack.origins = start_emulators(supervisor, ports, common)
        settings = Settings.from_env(common)
        storage = storage_for(settings)
        provision_buckets(storage)
        upload_templates(storage, PROJECT_ROOT / "templates")
        service_urls = {
            CONTROL_PLANE_SERVICE: ports.url("control_plane"),
            SANDBOX_JOB_SERVICE: ports.url("sandbox_job"),
            STATUS_RECORDER_SERVICE: ports.url("status_recorder"),
        }
        provision_pubsub(
            clients.publisher_client(settings),
            clients.subscriber_client(settings),
            project,
            ports.url("eventarc_router"),
            service_urls,
            delivery_mode(common),
        )
        jobs = [
            (stack.job_units[index], ports.job_port(index), {"VIBESDK_WORKSPACE_ROOT": str(stack.job_root(index))})
            for index in range(job_count)
        ]
        units = [(name, _local(ENTRY_POINTS[SANDBOX_JOB_SERVICE], port), port, own) for name, port, own in jobs]
        units += [
            (
                "status-recorder",
                _local(ENTRY_POINTS[STATUS_RECORDER_SERVICE], ports.status_recorder),
                ports.status_recorder,
                {},
            ),
            (
                "eventarc-router",
                [str(BIN / "uvicorn"), "--factory", "eventarc.router:create_app", "--host", HOST]
                + ["--port", str(ports.eventarc_router), "--log-level", "warning"],
                ports.eventarc_router,
                {},
            ),
            (
                "control-plane",
                _local(ENTRY_POINTS[CONTROL_PLANE_SERVICE], ports.control_plane),
                ports.control_plane,
                {},
            ),
        ]
        # The router spreads the trigger's deliveries over every instance (eventarc/router.py).
        job_urls = ",".join(stack.job_url(index) + "/" for index in range(job_count))
        unit_env = common | {destination_env_key(SANDBOX_JOB_SERVICE): job_urls}
        children = []
        for name, argv, port, own in units:
            child_env = unit_env | own | {"PORT": str(port), "HOST": HOST, "VIBESDK_UNIT": name}
            children.append((supervisor.start(name, argv, child_env, PROJECT_ROOT), port))
        for child, port in children:
            supervisor.wait_for_port(child, HOST, port)
    except BaseException:
        supervisor.stop()
        raise
    return stack
