"""Group commit: many callers' small calls made as one, without waiting to gather them.

A caller hands its item over and waits. One thread per GroupCall makes the calls: it takes every
item waiting, makes one call for them all and hands each caller its own result. Alone, a caller
waits for one call, as it would have anyway; under load, the items that arrive while a call is in
flight share the next one, and while the last group was shared the next waits `linger` seconds
more to gather (a lone caller on a quiet system never waits for it). The emulators and Google's
APIs charge per call far more than per item, so this is where throughput under load comes from
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCall(Generic[Item, Result]):
    """`call` takes a list of items and returns, in their order, a result or an exception for each."""

    def __init__(
        self,
        name: str,
        call: Callable[[list[Item]], Sequence[Result | BaseException]],
        limit: int,
        linger: float = 0.0,
    ) -> None:
        self._name, self._call, self._limit, self._linger = name, call, limit, linger
        self._waiting: list[tuple[Item, Future[Result]]] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def __call__(self, item: Item) -> Result:
        future: Future[Result] = Future()
        with self._ready:
            self._waiting.append((item, future))
            # Started on first use: functions-framework may fork after import.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            self._ready.notify()
        return future.result()

    def _serve(self) -> None:
        busy = False
        while True:
            with self._ready:
                while not self._waiting:
                    self._ready.wait()
            if busy:
                time.sleep(self._linger)
            with self._ready:
                group, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            busy = len(group) > 1
            try:
                outcomes = list(self._call([item for item, _ in group]))
                if len(outcomes) != len(group):
                    raise RuntimeError(f"{self._name}: {len(outcomes)} outcomes for {len(group)} items")
            except BaseException as error:  # every caller of the group gets it
                outcomes = [error] * len(group)
            for (_, future), outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
