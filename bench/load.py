"""Closed-loop load: C workers, N items, each timed from its start to its terminal Firestore write.

Completion is observed the same way for the pipeline and for the baseline: one batched read of
every outstanding document every 20 ms.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore

POLL_SECONDS = 0.02
Outcome = Callable[[dict[str, Any] | None], "str | None"]


@dataclass(frozen=True)
class LoadResult:
    runs: int
    concurrency: int
    seconds: float
    latencies: list[float]
    failed: int
    loadgen_cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def summary(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "runs_per_second": round(self.per_second, 1),
            "p50_ms": round(self.percentile(50) * 1000, 1),
            "p95_ms": round(self.percentile(95) * 1000, 1),
            "p99_ms": round(self.percentile(99) * 1000, 1),
            "mean_ms": round(statistics.mean(self.latencies) * 1000, 1),
            "failed": self.failed,
            # Share of one core the load generator itself used: far below 1 means it was not the bottleneck.
            "loadgen_cpu_share": round(self.loadgen_cpu_seconds / self.seconds, 2),
        }


class Completions:
    """Futures resolved when their Firestore document reaches a terminal state.

    One thread reads every outstanding document in one batched get every few
    milliseconds: the cost to the emulator is the same for the pipeline and the
    baseline, and does not grow with the documents already written (a listener's
    snapshot does: the client re-sorts its whole result set on every change).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, client: firestore.Client, outcome: Outcome) -> None:
        self._loop = loop
        self._client = client
        self._outcome = outcome
        self._waiting: dict[str, asyncio.Future[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def expect(self, path: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = self._loop.create_future()
        with self._lock:
            self._waiting[path] = future
        return future

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            with self._lock:
                paths = list(self._waiting)
            if not paths:
                continue
            refs = [self._client.document(path) for path in paths]
            for snapshot in self._client.get_all(refs):
                result = self._outcome(snapshot.to_dict()) if snapshot.exists else None
                if result is None:
                    continue
                with self._lock:
                    future = self._waiting.pop(snapshot.reference.path)
                self._loop.call_soon_threadsafe(_resolve, future, result)


def _resolve(future: asyncio.Future[str], result: str) -> None:
    if not future.done():
        future.set_result(result)


async def closed_loop(
    total: int,
    concurrency: int,
    start_one: Callable[[], Awaitable[str]],
    completions: Completions,
    timeout: float = 120,
) -> LoadResult:
    """Run `total` items with `concurrency` in flight; start_one() kicks one off and names its key."""
    latencies: list[float] = []
    failed = 0
    queue = list(range(total))

    async def worker() -> None:
        nonlocal failed
        while queue:
            queue.pop()
            began = time.perf_counter()
            key = await start_one()
            outcome = await asyncio.wait_for(completions.expect(key), timeout)
            latencies.append(time.perf_counter() - began)
            failed += outcome != "succeeded"

    cpu_before = _cpu()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return LoadResult(total, concurrency, seconds, latencies, failed, _cpu() - cpu_before)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_outcome(data: dict[str, Any] | None) -> str | None:
    status = (data or {}).get("status")
    return status if status in ("succeeded", "failed") else None


def written(data: dict[str, Any] | None) -> str | None:
    return "succeeded" if data else None
