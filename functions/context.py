"""What a function process keeps between invocations: one Context, built from its settings at start-up.

functions/main.py makes the process's one; a test makes its own, fresh.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from functions.dependencies import DependencyCache
from functions.egress import EgressProxy, proxy_for
from functions.fairness import OwnerSlots, default_share
from functions.isolation import Isolation
from functions.local_copies import LocalCopies
from functions.local_disk import LocalDisk
from functions.ordering import SessionOrder
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
    isolation: Isolation = field(init=False)  # its backend selected on first use
    disk: LocalDisk = field(init=False)
    local_copies: LocalCopies = field(init=False)  # the working copies on the disk, and those in use
    dependencies: DependencyCache = field(init=False)
    _egress: EgressProxy | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.slots = OwnerSlots(settings.max_actions_per_owner or default_share(settings.threads))
        self.isolation = Isolation(settings)
        self.disk = LocalDisk(settings.workspace_root)
        self.local_copies = LocalCopies(self.disk)
        self.dependencies = DependencyCache(self.storage, self.disk, self.isolation)

    @classmethod
    def from_settings(cls, settings: Settings) -> Context:
        return cls(
            settings=settings,
            store=RunStore(clients.firestore_client(settings)),
            bus=Bus(clients.publisher_client(settings), settings.project),
            storage=storage_for(settings),
        )

    def egress_proxy(self) -> EgressProxy:
        """The proxy of this process's commands, started on first use (its thread only where used)."""
        with self._lock:
            if self._egress is None:
                self._egress = proxy_for(self.settings)
            return self._egress
