"""The clients a function instance keeps between invocations, made on first use."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from functions.fairness import OwnerSlots, default_share
from functions.ordering import SessionOrder
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage, storage_for


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: RunStore
    bus: Bus
    storage: Storage
    order: SessionOrder = field(default_factory=SessionOrder)
    slots: OwnerSlots = field(default_factory=lambda: OwnerSlots(default_share()))


@functools.cache
def context() -> Context:
    settings = Settings.from_env()
    return Context(
        settings=settings,
        store=RunStore(clients.firestore_client(settings)),
        bus=Bus(clients.publisher_client(settings), settings.project),
        storage=storage_for(settings),
        slots=OwnerSlots(settings.max_actions_per_owner or default_share()),
    )
