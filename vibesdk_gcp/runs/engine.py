"""Read, decide, write: a group of items' conditional writes in two Firestore calls.

No transactions: Firestore's lock documents, and the emulator stalls for seconds when a run's
running and terminal events meet. The items' documents are read in one call and written in one
batch, each write conditional on the update time that was read; a racing writer makes the batch
fail, and the items read and decide again.

A shared document (an owner's share, claims.py) is one that several items of a group read and
change: they are planned together all the same, each seeing the changes of those planned before
it (Shared), and it is written once, after them all, on the same condition.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from google.api_core import exceptions as api_exceptions
from google.cloud import firestore

from vibesdk_gcp.errors import ServiceUnavailable
from vibesdk_gcp.runs.calls import OUTAGES, FirestoreCalls, Snapshots, unavailable
from vibesdk_gcp.runs.documents import Fields

MAX_WRITE_ATTEMPTS = 20

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

# A write whose document changed (or was created) since it was read; the emulator may abort instead.
RACES = (api_exceptions.FailedPrecondition, api_exceptions.Aborted, api_exceptions.AlreadyExists)


class Shared:
    """The shared documents of one read: as the items planned so far left them."""

    def __init__(self, calls: FirestoreCalls, snapshots: Snapshots) -> None:
        self._calls, self._snapshots = calls, snapshots
        self._changed: dict[str, Fields] = {}

    def get(self, ref: firestore.DocumentReference) -> Fields | None:
        if ref.path in self._changed:
            return self._changed[ref.path]
        return self._snapshots[ref.path].to_dict()

    def set(self, ref: firestore.DocumentReference, fields: Fields) -> None:
        self._changed[ref.path] = fields

    def write(self, batch: firestore.WriteBatch) -> None:
        """Each changed document once, conditional on the update time read (created if it did not exist)."""
        for path, fields in self._changed.items():
            snapshot = self._snapshots[path]
            if snapshot.exists:
                self._calls.update_unchanged(batch, snapshot, fields)
            else:
                batch.create(snapshot.reference, fields)  # a racing creator fails it as a precondition would


Plan = Callable[[Item, Snapshots, firestore.WriteBatch, Shared], Outcome]


class ReadDecideWrite(Generic[Item, Outcome]):
    """A GroupCall's call: `refs_of` names the documents an item reads, `shared_of` those it reads
    and may share with others of its group; `plan` decides from their snapshots, adds the item's
    writes to the batch (FirestoreCalls.update_unchanged) and its shared changes to Shared, and
    returns the item's outcome."""

    def __init__(
        self,
        calls: FirestoreCalls,
        refs_of: Callable[[Item], list[firestore.DocumentReference]],
        plan: Plan[Item, Outcome],
        shared_of: Callable[[Item], list[firestore.DocumentReference]] = lambda item: [],
    ) -> None:
        self._calls, self._refs_of, self._plan, self._shared_of = calls, refs_of, plan, shared_of

    def _read(self, items: list[Item]) -> tuple[Snapshots, Shared]:
        snapshots = self._calls.read([ref for item in items for ref in self._refs_of(item) + self._shared_of(item)])
        return snapshots, Shared(self._calls, snapshots)

    def __call__(self, items: list[Item]) -> list[Outcome | BaseException]:
        """Every item's outcome, or the error that was its alone.

        An item whose documents an earlier item of the group also touches goes alone afterwards,
        and so does every item when a racing writer spoils the batch: alone, it reads, decides
        and writes again until it holds.
        """
        outcomes: dict[int, Outcome | BaseException] = {}
        together: list[int] = []
        alone: list[int] = []
        touched: set[str] = set()
        for index, item in enumerate(items):
            paths = {ref.path for ref in self._refs_of(item)}
            (alone if paths & touched else together).append(index)
            touched |= paths
        try:
            snapshots, shared = self._read([items[index] for index in together])
            batch = self._calls.client.batch()
            for index in together:
                outcomes[index] = self._plan(items[index], snapshots, batch, shared)
            shared.write(batch)
            self._calls.commit(batch)
        except RACES:
            alone = sorted(together + alone)
        except OUTAGES as error:
            failure: BaseException = unavailable(error)
            return [failure] * len(items)
        except Exception:  # one item could not be planned (a malformed document): nothing was written
            alone = sorted(together + alone)
        for index in alone:
            try:
                outcomes[index] = self._until_it_holds(items[index])
            except Exception as error:  # that item's failure, not the group's
                outcomes[index] = error
        return [outcomes[index] for index in range(len(items))]

    def _until_it_holds(self, item: Item) -> Outcome:
        refs = self._refs_of(item)
        try:
            for attempt in range(MAX_WRITE_ATTEMPTS):
                snapshots, shared = self._read([item])
                batch = self._calls.client.batch()
                outcome = self._plan(item, snapshots, batch, shared)
                shared.write(batch)
                try:
                    self._calls.commit(batch)
                except RACES:
                    time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                    continue
                return outcome
        except OUTAGES as error:
            raise unavailable(error) from error
        raise ServiceUnavailable(f"{refs[0].path} kept changing: gave up after {MAX_WRITE_ATTEMPTS} attempts")
