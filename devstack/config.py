"""Ports and addresses of the local stack; each port is overridable by its variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from vibesdk_gcp.errors import ConfigurationError

HOST = "127.0.0.1"

# (attribute, environment variable, default); the README lists the same table.
PORTS = (
    ("control_plane", "VIBESDK_CONTROL_PLANE_PORT", 8080),
    ("sandbox_job", "VIBESDK_SANDBOX_JOB_PORT", 8081),
    ("status_recorder", "VIBESDK_STATUS_RECORDER_PORT", 8082),
    ("eventarc_router", "VIBESDK_EVENTARC_ROUTER_PORT", 8083),
    ("pubsub", "VIBESDK_PUBSUB_EMULATOR_PORT", 8085),
    ("firestore", "VIBESDK_FIRESTORE_EMULATOR_PORT", 8086),
    ("storage", "VIBESDK_STORAGE_EMULATOR_PORT", 9023),
)


@dataclass(frozen=True)
class Ports:
    control_plane: int
    sandbox_job: int
    status_recorder: int
    eventarc_router: int
    pubsub: int
    firestore: int
    storage: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ports:
        env = os.environ if env is None else env
        values = {}
        for attribute, key, default in PORTS:
            raw = env.get(key) or str(default)
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ConfigurationError(f"{key} must be a port number, got {raw!r}")
            values[attribute] = int(raw)
        return cls(**values)

    @classmethod
    def shifted(cls, offset: int) -> Ports:
        """The default ports moved by offset: a stack of its own beside `make dev`.

        Keep the result below 32768: above it the kernel hands out ports to outgoing connections,
        and one of them may hold the port a server is about to bind.
        """
        return cls(**{attribute: default + offset for attribute, _, default in PORTS})

    def url(self, attribute: str) -> str:
        return f"http://{HOST}:{getattr(self, attribute)}"

    def job_port(self, index: int) -> int:
        """Job instance `index`'s port (0 is the first): ten apart, clear of every other default."""
        return self.sandbox_job + JOB_PORT_STEP * index


# Cloud Run runs the sandbox job on many instances and Eventarc's pushes land on any of them: the
# local stack runs this many, each on its own port with its own disk, behind the one router.
JOB_INSTANCES_VARIABLE = "VIBESDK_JOB_INSTANCES"
DEFAULT_JOB_INSTANCES = 2
MAX_JOB_INSTANCES = 9
JOB_PORT_STEP = 10
JOB_UNIT = "sandbox-job"


def job_instances(env: Mapping[str, str]) -> int:
    raw = env.get(JOB_INSTANCES_VARIABLE) or str(DEFAULT_JOB_INSTANCES)
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_JOB_INSTANCES:
        raise ConfigurationError(
            f"{JOB_INSTANCES_VARIABLE} must be a number from 1 to {MAX_JOB_INSTANCES}, got {raw!r}"
        )
    return int(raw)


def job_unit(index: int) -> str:
    """The supervisor's name of job instance `index`: sandbox-job, sandbox-job-2, ..."""
    return JOB_UNIT if index == 0 else f"{JOB_UNIT}-{index + 1}"
