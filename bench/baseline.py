"""The baseline's function: one push-delivered CloudEvent, one Firestore write, nothing else.

functions-framework --source bench/baseline.py --target baseline --signature-type cloudevent
"""

from __future__ import annotations

import functools

import functions_framework
from cloudevents.http import CloudEvent
from google.cloud import firestore

from vibesdk_gcp import clients
from vibesdk_gcp.envelope import from_push_body
from vibesdk_gcp.settings import Settings

COLLECTION = "benchBaseline"


@functools.cache
def _firestore() -> firestore.Client:
    return clients.firestore_client(Settings.from_env())


@functions_framework.cloud_event
def baseline(event: CloudEvent) -> None:
    message = from_push_body(event.data)
    _firestore().collection(COLLECTION).document(message.attributes["id"]).set({"done": True})
