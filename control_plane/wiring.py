"""The control plane's Google clients, made from settings once at start-up."""

from __future__ import annotations

from control_plane.service import ControlPlane, Limits
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import storage_for


def control_plane_from(settings: Settings) -> ControlPlane:
    return ControlPlane(
        RunStore(clients.firestore_client(settings)),
        Bus(clients.publisher_client(settings), settings.project),
        storage_for(settings),
        Limits.from_settings(settings),
        settings,
    )
