"""Google client constructors that honour the emulator settings.

Each client library reads its own *_EMULATOR_HOST variable; we only add
anonymous credentials where an emulator needs them, so nothing looks for
application default credentials on a laptop.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore, pubsub_v1, storage

from vibesdk_gcp.settings import Settings


@contextlib.contextmanager
def _emulator(variable: str, host: str | None) -> Iterator[None]:
    """The variable set while a client is made (clients read it then), as it was afterwards."""
    before = os.environ.get(variable)
    if host:
        os.environ[variable] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def firestore_client(settings: Settings) -> firestore.Client:
    with _emulator("FIRESTORE_EMULATOR_HOST", settings.firestore_emulator_host):
        if settings.firestore_emulator_host:
            return firestore.Client(project=settings.project, credentials=AnonymousCredentials())
        return firestore.Client(project=settings.project)


def publisher_client(settings: Settings) -> pubsub_v1.PublisherClient:
    options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    # Publish promptly: each request is one small message a client is waiting on.
    batch = pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.005)
    with _emulator("PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host):
        return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=options)


def subscriber_client(settings: Settings) -> pubsub_v1.SubscriberClient:
    with _emulator("PUBSUB_EMULATOR_HOST", settings.pubsub_emulator_host):
        return pubsub_v1.SubscriberClient()


def storage_client(settings: Settings) -> storage.Client:
    # The client's bucket-metadata cache only labels OpenTelemetry spans, which we do not export;
    # left on, every 404 (an object that is not there yet) costs a thread and a bucket lookup.
    os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
    if settings.storage_emulator_host:
        os.environ["STORAGE_EMULATOR_HOST"] = settings.storage_emulator_host
        return storage.Client(project=settings.project, credentials=AnonymousCredentials())
    return storage.Client(project=settings.project)
