"""Closed-loop load: C workers, N items, each timed from its start to its terminal Firestore write.

Completion is observed the same way for the pipeline and for the baseline: one batched read of
the outstanding documents' status field, every tenth of the median latency so far. Each item's
time ends at its document's own update time in Firestore, so the polling pace decides only when
a worker starts its next item, never the figure. The pace aims at about ten reads of a document
per median latency, whatever the latency; a loop whose runs spread wide is read more (its slow
runs are read for longer), so the reads the harness made are counted and reported
(`harness_reads_per_item`), never assumed.
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

# Polls per latency, and the bounds of the interval between polls.
POLLS_PER_LATENCY = 10
POLL_SECONDS = (0.01, 0.2)
Outcome = Callable[[dict[str, Any] | None], "str | None"]
# An outcome and when its document was written (seconds since the epoch).
Finished = tuple[str, float]


@dataclass(frozen=True)
class LoadResult:
    runs: int
    concurrency: int
    seconds: float
    latencies: list[float]
    failed: int
    loadgen_cpu_seconds: float
    harness_reads: int

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    def summary(self) -> dict[str, Any]:
        """The figures the report shows; every statistic a goal may be judged on is among them."""
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
            # Documents the harness read per item, watching for completion: its own cost to the emulator.
            "harness_reads_per_item": round(self.harness_reads / self.runs, 1),
        }

    def histogram(self, width_ms: float) -> list[list[float]]:
        """[bin start ms, runs] for every bin of `width_ms` from the fastest run's to the slowest's."""
        counts: dict[int, int] = {}
        for latency in self.latencies:
            index = int(latency * 1000 // width_ms)
            counts[index] = counts.get(index, 0) + 1
        return [[round(index * width_ms), counts.get(index, 0)] for index in range(min(counts), max(counts) + 1)]


def combined(parts: list[LoadResult]) -> LoadResult:
    """Rounds of one loop as one result: runs, time, latencies, failures, CPU and reads added up."""
    assert parts, "no rounds to combine"
    return LoadResult(
        sum(part.runs for part in parts),
        parts[0].concurrency,
        sum(part.seconds for part in parts),
        [latency for part in parts for latency in part.latencies],
        sum(part.failed for part in parts),
        sum(part.loadgen_cpu_seconds for part in parts),
        sum(part.harness_reads for part in parts),
    )


class Completions:
    """Futures resolved with (outcome, write time) when their document reaches a terminal state.

    One thread reads every outstanding document's `field` in one batched get every `interval`
    seconds. (A listener would cost less in reads, but the Python client re-sorts its whole
    result set on every change: the load generator became the bottleneck.)
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, client: firestore.Client, outcome: Outcome, field: str) -> None:
        self._loop = loop
        self._client = client
        self._outcome = outcome
        self._field = field
        self.interval = POLL_SECONDS[0]
        self.reads = 0
        self._waiting: dict[str, asyncio.Future[Finished]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def expect(self, path: str) -> asyncio.Future[Finished]:
        future: asyncio.Future[Finished] = self._loop.create_future()
        with self._lock:
            self._waiting[path] = future
        return future

    def pace(self, latencies: list[float]) -> None:
        """Poll about POLLS_PER_LATENCY times per median latency of the last items."""
        median = statistics.median(latencies[-64:])
        self.interval = min(max(median / POLLS_PER_LATENCY, POLL_SECONDS[0]), POLL_SECONDS[1])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                paths = list(self._waiting)
            if not paths:
                continue
            self.reads += len(paths)
            refs = [self._client.document(path) for path in paths]
            for snapshot in self._client.get_all(refs, field_paths=[self._field]):
                result = self._outcome(snapshot.to_dict()) if snapshot.exists else None
                if result is None:
                    continue
                with self._lock:
                    future = self._waiting.pop(snapshot.reference.path)
                finished = (result, snapshot.update_time.timestamp())
                self._loop.call_soon_threadsafe(_resolve, future, finished)


def _resolve(future: asyncio.Future[Finished], finished: Finished) -> None:
    if not future.done():
        future.set_result(finished)


async def closed_loop(
    total: int,
    concurrency: int,
    start_one: Callable[[], Awaitable[str]],
    completions: Completions,
    timeout: float = 120,
) -> LoadResult:
    """Run `total` items with `concurrency` in flight; start_one() kicks one off and names its key.

    Times are wall-clock (the emulator stamps writes with the same clock): an item runs from just
    before it is started to its document's terminal write, the whole from the first start to the
    last such write.
    """
    latencies: list[float] = []
    ends: list[float] = []
    failed = 0
    queue = list(range(total))

    async def worker() -> None:
        nonlocal failed
        while queue:
            queue.pop()
            began = time.time()
            key = await start_one()
            try:
                outcome, written_at = await asyncio.wait_for(completions.expect(key), timeout)
            except TimeoutError:
                raise TimeoutError(f"{key} did not reach a terminal state within {timeout:g} s") from None
            latencies.append(written_at - began)
            ends.append(written_at)
            completions.pace(latencies)
            failed += outcome != "succeeded"

    cpu_before, reads_before = _cpu(), completions.reads
    started = time.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = max(ends) - started
    return LoadResult(
        total, concurrency, seconds, latencies, failed, _cpu() - cpu_before, completions.reads - reads_before
    )


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_outcome(data: dict[str, Any] | None) -> str | None:
    status = (data or {}).get("status")
    return status if status in ("succeeded", "failed") else None


def written(data: dict[str, Any] | None) -> str | None:
    return "succeeded" if data else None
