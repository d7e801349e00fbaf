"""What a function process keeps between invocations: one Context, built from its settings at start-up.

functions/main.py makes the process's one; a test makes its own, fresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from functions.dependencies import DependencyCache
from functions.fairness import OwnerSlots, default_share
from functions.local_copies import LocalCopies
from functions.local_disk import LocalDisk
from functions.ordering import SessionOrder
from functions.sandbox import Sandbox
from functions.session_locks import SessionLocks
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage, storage_for


@dataclass(eq=False)
class Context:
    settings: Settings
    store: RunStore
    bus: Bus
    storage: Storage
    order: SessionOrder = field(default_factory=SessionOrder)
    session_locks: SessionLocks = field(default_factory=SessionLocks)
    # Made from the settings, below.
    slots: OwnerSlots = field(init=False)
    sandbox: Sandbox = field(init=False)  # its isolation backend and egress proxy, each made on first use
    disk: LocalDisk = field(init=False)
    local_copies: LocalCopies = field(init=False)  # the working copies on the disk, and those in use
    dependencies: DependencyCache = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.slots = OwnerSlots(
            settings.max_actions_per_owner or default_share(settings.threads, settings.job_instances)
        )
        self.sandbox = Sandbox(settings)
        self.disk = LocalDisk(settings.workspace_root)
        self.local_copies = LocalCopies(self.disk)
        self.dependencies = DependencyCache(self.storage, self.disk, self.sandbox.isolation)

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        return cls(
            settings=settings,
            store=RunStore(clients.firestore_client(settings)),
            bus=Bus(clients.publisher_client(settings), settings.project),
            storage=storage_for(settings),
        )
