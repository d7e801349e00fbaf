"""Google's emulators, started once per test session; each test gets a fresh project and clean buckets."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.config import HOST, Ports
from devstack.processes import Supervisor
from devstack.provision import provision_buckets
from devstack.stack import check_ports_free, emulator_env, start_emulators
from functions.context import Context
from functions.sandbox import Sandbox
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


# Cloud Run's `sandbox` command, stood in for by one that implements its documented flags on bubblewrap.
CLOUD_RUN_STANDIN_SOURCE = Path(__file__).resolve().parent / "standins" / "sandbox"


@pytest.fixture(scope="session")
def cloud_run_standin() -> Iterator[Path]:
    """The stand-in, copied where the sandbox's unprivileged uid can run it.

    The job probes the sandbox command as that uid (functions/isolation.py), which cannot reach a
    clone in a private folder (a checkout under /root, or in `mktemp -d`): run from the clone, the
    Cloud Run backend failed its probe there ("Permission denied"). A folder of the test run's own,
    0755 and the runner's, which nobody else can write.
    """
    folder = Path(tempfile.mkdtemp(prefix="vibesdk-standin-"))
    folder.chmod(0o755)
    standin = folder / "sandbox"
    shutil.copyfile(CLOUD_RUN_STANDIN_SOURCE, standin)
    standin.chmod(0o755)
    yield standin
    shutil.rmtree(folder, ignore_errors=True)


# Commands as the job runs them, with one set of settings: each test makes its own (use_backend).
Commands = Sandbox


@pytest.fixture
def use_backend(monkeypatch: pytest.MonkeyPatch, cloud_run_standin: Path) -> Callable[[str], Commands]:
    """Choose the isolation backend by name (cloud-run: the stand-in): commands with it, probed on first use."""

    def use(name: str) -> Commands:
        monkeypatch.setenv("VIBESDK_SANDBOX_BACKEND", name)
        monkeypatch.setenv("VIBESDK_CLOUD_RUN_SANDBOX_COMMAND", str(cloud_run_standin))
        return Commands(Settings.from_env())

    return use


def require_backend(commands: Commands, name: str) -> None:
    """Fail, never skip, when the backend a security test runs against does not work here."""
    found, why = commands.isolation.selected()
    if found is None or found.name != name:
        pytest.fail(f"the {name} isolation backend does not work here, so this test cannot run: {why}", pytrace=False)


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
    """A job process's context of its own: its isolation, proxy, locks and disk, fresh."""
    return Context(settings, store, Bus(clients.publisher_client(settings), settings.project), storage)
