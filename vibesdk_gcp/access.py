"""The Google permissions a unit really uses, noted where the adapters call Google.

Off unless VIBESDK_ACCESS_DIR is set; then the first use of each (permission, resource) in a
process is appended to `<dir>/<unit>.jsonl`. tests/e2e/test_iam.py drives every action through
`make dev`'s stack, reads these files and holds infra/gcp's grants to them: nothing missing,
nothing broader.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

# The permission names are IAM's (https://cloud.google.com/iam/docs/permissions-reference).
OBJECT_GET = "storage.objects.get"
OBJECT_LIST = "storage.objects.list"
OBJECT_CREATE = "storage.objects.create"
OBJECT_DELETE = "storage.objects.delete"  # also what overwriting an object needs
PUBLISH = "pubsub.topics.publish"
FIRESTORE_READ = "datastore.entities.get"
FIRESTORE_LIST = "datastore.entities.list"  # queries, and listeners on a collection
FIRESTORE_WRITE = "datastore.entities.update"
DATABASE = "(default)"

_seen: set[tuple[str, str]] = set()
_lock = threading.Lock()


def note(permission: str, resource: str) -> None:
    if (permission, resource) in _seen:
        return
    with _lock:
        if (permission, resource) in _seen:
            return
        _seen.add((permission, resource))
        directory = os.environ.get("VIBESDK_ACCESS_DIR")
        if not directory:
            return
        unit = os.environ.get("VIBESDK_UNIT", "unit")
        with (Path(directory) / f"{unit}.jsonl").open("a") as out:
            out.write(json.dumps({"permission": permission, "resource": resource}) + "\n")


def used(directory: Path, unit: str) -> set[tuple[str, str]]:
    path = directory / f"{unit}.jsonl"
    if not path.exists():
        return set()
    return {(entry["permission"], entry["resource"]) for entry in map(json.loads, path.read_text().splitlines())}
