"""Read, decide, write: a group of items' conditional writes in two Firestore calls.

No transactions: Firestore's lock documents, and the emulator stalls for seconds when a run's
running and terminal events meet. The items' documents are read in one call and written in one
batch, each write conditional on the update time that was read; a racing writer makes the batch
fail, and the items read and decide again.
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

MAX_WRITE_ATTEMPTS = 20

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")

# A write whose document changed (or was created) since it was read; the emulator may abort instead.
RACES = (api_exceptions.FailedPrecondition, api_exceptions.Aborted, api_exceptions.AlreadyExists)


class ReadDecideWrite(Generic[Item, Outcome]):
    """A GroupCall's call: `refs_of` names the documents an item reads; `plan` decides from their
    snapshots, adds the item's writes to the batch (FirestoreCalls.update_unchanged) and returns
    the item's outcome."""

    def __init__(
        self,
        calls: FirestoreCalls,
        refs_of: Callable[[Item], list[firestore.DocumentReference]],
        plan: Callable[[Item, Snapshots, firestore.WriteBatch], Outcome],
    ) -> None:
        self._calls, self._refs_of, self._plan = calls, refs_of, plan

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
            snapshots = self._calls.read([ref for index in together for ref in self._refs_of(items[index])])
            batch = self._calls.client.batch()
            for index in together:
                outcomes[index] = self._plan(items[index], snapshots, batch)
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
                snapshots = self._calls.read(refs)
                batch = self._calls.client.batch()
                outcome = self._plan(item, snapshots, batch)
                try:
                    self._calls.commit(batch)
                except RACES:
                    time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
                    continue
                return outcome
        except OUTAGES as error:
            raise unavailable(error) from error
        raise ServiceUnavailable(f"{refs[0].path} kept changing: gave up after {MAX_WRITE_ATTEMPTS} attempts")
