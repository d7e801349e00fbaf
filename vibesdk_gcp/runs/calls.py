"""Firestore calls on sessions and runs: counted, bounded in time, their failures an outage."""

from __future__ import annotations

import hashlib
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.cloud import firestore
from google.cloud.firestore_v1.base_document import DocumentSnapshot

from vibesdk_gcp import access
from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.metrics import work
from vibesdk_gcp.names import (
    OWNER_SHARES_COLLECTION,
    QUEUED_REQUESTS_SUBCOLLECTION,
    RUNS_COLLECTION,
    RUNS_SUBCOLLECTION,
)
from vibesdk_gcp.runs.documents import Fields

# Under load, how long a group of Firestore calls waits to gather more (vibesdk_gcp/batching.py).
GROUP_LINGER_SECONDS = 0.005
# What an API request waits for Firestore before it answers 503 instead.
CALL_LIMITS: dict[str, Any] = {"retry": Retry(timeout=10), "timeout": 10}
# Firestore failing (or answering too slowly, retries spent): an outage to the caller, 503 or a nack.
OUTAGES = (api_exceptions.GoogleAPICallError, api_exceptions.RetryError)

Snapshot = DocumentSnapshot[firestore.DocumentReference]
# Snapshots by document path.
Snapshots = dict[str, Snapshot]


def unavailable(error: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"Firestore is unavailable: {error}")


def possible_id(value: str) -> bool:
    """Whether Firestore could hold a document of this id (it refuses the others with 400)."""
    reserved = value.startswith("__") and value.endswith("__")
    return (
        bool(value) and "/" not in value and value not in (".", "..") and not reserved and len(value.encode()) <= 1500
    )


class FirestoreCalls:
    def __init__(self, client: firestore.Client) -> None:
        self.client = client

    def session_ref(self, session_id: str) -> firestore.DocumentReference:
        return self.client.collection(RUNS_COLLECTION).document(session_id)

    def run_ref(self, session_id: str, run_id: str) -> firestore.DocumentReference:
        runs: firestore.CollectionReference = self.session_ref(session_id).collection(RUNS_SUBCOLLECTION)
        return runs.document(run_id)

    def request_ref(self, session_id: str, run_id: str) -> firestore.DocumentReference:
        requests: firestore.CollectionReference = self.session_ref(session_id).collection(QUEUED_REQUESTS_SUBCOLLECTION)
        return requests.document(run_id)

    def owner_share_ref(self, owner: str) -> firestore.DocumentReference:
        # Hashed: an owner (an email, a key's name) may hold characters a document id may not.
        return self.client.collection(OWNER_SHARES_COLLECTION).document(hashlib.sha256(owner.encode()).hexdigest())

    def read(self, refs: list[firestore.DocumentReference]) -> Snapshots:
        """The documents in one call (a missing one's snapshot does not exist)."""
        unique = list({ref.path: ref for ref in refs}.values())
        if not unique:
            return {}
        access.note(access.FIRESTORE_READ, access.DATABASE)
        work.add("firestore.reads", len(unique))
        work.add("firestore.calls")
        return {snapshot.reference.path: snapshot for snapshot in self.client.get_all(unique, **CALL_LIMITS)}

    def commit(self, batch: firestore.WriteBatch) -> None:
        if len(batch):
            access.note(access.FIRESTORE_WRITE, access.DATABASE)
            work.add("firestore.writes", len(batch))
            work.add("firestore.calls")
            batch.commit(**CALL_LIMITS)

    def commit_or_unavailable(self, batch: firestore.WriteBatch) -> None:
        try:
            self.commit(batch)
        except OUTAGES as error:
            raise unavailable(error) from error

    def update_unchanged(self, batch: firestore.WriteBatch, snapshot: Snapshot, fields: Fields) -> None:
        """Update the document on condition that it is still as read: a racing writer fails the batch."""
        option = self.client.write_option(last_update_time=snapshot.update_time)
        batch.update(snapshot.reference, fields, option=option)
