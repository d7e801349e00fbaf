"""API keys: issued and revoked by a command, stored only as hashes, each bound to an owner.

    python -m control_plane.keys issue --owner alice@example.com   # prints the key once
    python -m control_plane.keys revoke KEY_ID
    python -m control_plane.keys list

A key reads `vsk_<id>_<secret>`; Firestore keeps `apiKeys/<id>` with the secret's SHA-256 (the
secret is 256 random bits, so a fast hash is enough), the owner and the revocation time.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore

from vibesdk_gcp import access, clients
from vibesdk_gcp.bounded import BoundedDict
from vibesdk_gcp.errors import ServiceUnavailable, Unauthenticated
from vibesdk_gcp.names import API_KEYS_COLLECTION
from vibesdk_gcp.schemas import utcnow
from vibesdk_gcp.settings import Settings

PREFIX = "vsk"
# A revoked key stops working within this many seconds on every instance.
CACHE_SECONDS = 5.0
# Keys remembered at most (unknown ones too): a flood of made-up keys cannot grow the cache.
MAX_CACHED_KEYS = 10_000
KEY_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Caller:
    """Who is calling, and whether their commands may reach the egress allow-list (on unless a key says off)."""

    owner: str
    egress: bool = True


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore:
    def __init__(self, client: firestore.Client) -> None:
        self._keys = client.collection(API_KEYS_COLLECTION)
        self._cache: BoundedDict[str, tuple[float, dict[str, object] | None]] = BoundedDict(MAX_CACHED_KEYS)
        self._lock = threading.Lock()

    def issue(self, owner: str, egress: bool = True) -> tuple[str, str]:
        """(key id, the whole key): the key is shown once and never stored.

        `egress`: whether the key's commands may ask for network (only ever to the allow-list).
        """
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        access.note(access.FIRESTORE_WRITE, access.DATABASE)
        self._keys.document(key_id).create(
            {"hash": _digest(secret), "owner": owner, "egress": egress, "createdAt": utcnow(), "revokedAt": None}
        )
        return key_id, f"{PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        try:
            self._keys.document(key_id).update({"revokedAt": utcnow()})
        except api_exceptions.NotFound:
            return False
        with self._lock:
            self._cache.pop(key_id, None)
        return True

    def listing(self) -> list[dict[str, object]]:
        return [
            {"keyId": doc.id} | {k: v for k, v in (doc.to_dict() or {}).items() if k != "hash"}
            for doc in self._keys.stream()
        ]

    def owner_of(self, key: str) -> str:
        """The owner a presented key belongs to; Unauthenticated for anything else."""
        return self.caller(key).owner

    def caller(self, key: str) -> Caller:
        """The owner a presented key belongs to and what it may do; Unauthenticated for anything else."""
        prefix, _, rest = key.partition("_")
        key_id, _, secret = rest.partition("_")
        # Ids are what issue() makes (16 hex digits): nothing else is looked up.
        if prefix != PREFIX or not KEY_ID.fullmatch(key_id) or not secret:
            raise Unauthenticated("malformed API key")
        record = self._record(key_id)
        if record is None or record.get("revokedAt") or not hmac.compare_digest(str(record["hash"]), _digest(secret)):
            raise Unauthenticated("unknown or revoked API key")
        return Caller(str(record["owner"]), record.get("egress", True) is not False)

    def _record(self, key_id: str) -> dict[str, object] | None:
        with self._lock:
            cached = self._cache.get(key_id)
            if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
        access.note(access.FIRESTORE_READ, access.DATABASE)
        try:
            snapshot = self._keys.document(key_id).get(timeout=10)
        except api_exceptions.GoogleAPICallError as error:
            raise ServiceUnavailable(f"Firestore is unavailable: {error}") from error
        record = snapshot.to_dict() if snapshot.exists else None
        with self._lock:
            self._cache[key_id] = (time.monotonic(), record)
        return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    issue = commands.add_parser("issue", help="issue a key for an owner; prints it once")
    issue.add_argument("--owner", required=True)
    issue.add_argument("--no-egress", action="store_true", help="its commands may not ask for network at all")
    revoke = commands.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    commands.add_parser("list", help="list keys (ids, owners, dates; never secrets)")
    args = parser.parse_args()
    keys = KeyStore(clients.firestore_client(Settings.from_env()))
    if args.command == "issue":
        key_id, key = keys.issue(args.owner, egress=not args.no_egress)
        print(f"key id {key_id} for {args.owner}; the key, shown once:\n{key}")
    elif args.command == "revoke":
        raise SystemExit(0 if keys.revoke(args.key_id) else f"no key {args.key_id}")
    else:
        for record in keys.listing():
            print(record)


if __name__ == "__main__":
    main()
