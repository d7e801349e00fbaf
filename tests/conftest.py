"""Google's emulators, started once per test session; each test gets a fresh project and clean buckets."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.config import HOST, Ports
from devstack.processes import Supervisor
from devstack.provision import provision_buckets
from devstack.stack import check_ports_free, emulator_env, start_emulators
from functions.context import Context
from tests import PORT_SHIFT
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.names import BUCKETS
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage, storage_for

# Away from `make dev`'s ports, so the tests run beside a running stack, and below the ephemeral
# range (32768 and up), where an outgoing connection may hold a port when a server wants it.
EMULATOR_PORTS = Ports(
    control_plane=0,
    sandbox_job=0,
    status_recorder=0,
    eventarc_router=0,
    pubsub=18085 + PORT_SHIFT,
    firestore=18086 + PORT_SHIFT,
    storage=19023 + PORT_SHIFT,
)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    check_ports_free(EMULATOR_PORTS)
    supervisor = Supervisor(tmp_path_factory.mktemp("emulator-logs"))
    env = dict(os.environ) | emulator_env(EMULATOR_PORTS)
    try:
        start_emulators(supervisor, EMULATOR_PORTS, env)
        yield emulator_env(EMULATOR_PORTS)
    finally:
        supervisor.stop()


@pytest.fixture(scope="session")
def sandbox_root() -> Iterator[Path]:
    """Workspaces live where the sandbox's unprivileged uid can reach them (pytest's tmp is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="vibesdk-test-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def settings(emulators: dict[str, str], sandbox_root: Path) -> Iterator[Settings]:
    """A project of its own per test; Firestore and the buckets are wiped after it."""
    project = f"test-{uuid.uuid4().hex[:10]}"
    settings = Settings.from_env(
        emulators | {"GOOGLE_CLOUD_PROJECT": project, "VIBESDK_WORKSPACE_ROOT": str(sandbox_root / project)}
    )
    storage = storage_for(settings)
    provision_buckets(storage)
    yield settings
    httpx.delete(
        f"http://{HOST}:{EMULATOR_PORTS.firestore}/emulator/v1/projects/{project}/databases/(default)/documents"
    )
    for bucket in BUCKETS:
        storage.delete_prefix(bucket, "")


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return storage_for(settings)


@pytest.fixture
def store(settings: Settings) -> RunStore:
    return RunStore(clients.firestore_client(settings))


@pytest.fixture
def context(settings: Settings, store: RunStore, storage: Storage) -> Context:
    return Context(settings, store, Bus(clients.publisher_client(settings), settings.project), storage)
