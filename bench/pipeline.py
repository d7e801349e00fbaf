"""End to end against the bare emulator loop, on the same emulators, same N and C."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.baseline import COLLECTION
from bench.floor import push_subscription
from bench.load import Completions, LoadResult, closed_loop, run_outcome, written
from devstack.config import HOST
from devstack.stack import PROJECT_ROOT, Stack
from vibesdk_gcp import clients
from vibesdk_gcp.names import RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.settings import Settings

BASELINE_TOPIC = "bench-baseline"
CHEAP_ACTION = {"templateName": "static-site", "action": "getInstanceStatus"}
# Unmeasured runs first, at full concurrency: the emulators' JIT warms up on them, for both loops.
WARMUP_RUNS = 100


def start_baseline_function(stack: Stack, port: int) -> None:
    settings = Settings.from_env(stack.env)
    child = stack.supervisor.start(
        "baseline-function",
        [
            str(Path(sys.executable).parent / "functions-framework"),
            "--source",
            str(PROJECT_ROOT / "bench" / "baseline.py"),
            "--target",
            "baseline",
            "--signature-type",
            "cloudevent",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        stack.env | {"PORT": str(port)},
        PROJECT_ROOT,
    )
    stack.supervisor.wait_for_port(child, HOST, port)
    push_subscription(settings, stack.project, BASELINE_TOPIC, port)


async def measure_pipeline(stack: Stack, runs: int, concurrency: int, warmup: int = WARMUP_RUNS) -> LoadResult:
    firestore = clients.firestore_client(Settings.from_env(stack.env))
    completions = Completions(asyncio.get_running_loop(), firestore, run_outcome, "status")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {stack.token}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, limits=limits, timeout=60) as http:

        async def start_one() -> str:
            response = await http.post(
                "/api/agent", content=json.dumps(CHEAP_ACTION), headers={"content-type": "application/json"}
            )
            response.raise_for_status()
            queued = response.json()
            return f"{RUNS_COLLECTION}/{queued['sessionId']}/{RUNS_SUBCOLLECTION}/{queued['runId']}"

        await closed_loop(min(warmup, runs), concurrency, start_one, completions)
        result = await closed_loop(runs, concurrency, start_one, completions)
    completions.close()
    return result


async def measure_floor(
    stack: Stack, api_url: str, runs: int, concurrency: int, warmup: int = WARMUP_RUNS
) -> LoadResult:
    """The floor loop (bench/floor.py), driven and timed exactly as the pipeline is."""
    firestore = clients.firestore_client(Settings.from_env(stack.env))
    completions = Completions(asyncio.get_running_loop(), firestore, run_outcome, "status")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=60) as http:

        async def start_one() -> str:
            response = await http.post("/run")
            response.raise_for_status()
            return str(response.json()["path"])

        await closed_loop(min(warmup, runs), concurrency, start_one, completions)
        result = await closed_loop(runs, concurrency, start_one, completions)
    completions.close()
    return result


async def measure_baseline(stack: Stack, runs: int, concurrency: int, warmup: int = WARMUP_RUNS) -> LoadResult:
    settings = Settings.from_env(stack.env)
    completions = Completions(asyncio.get_running_loop(), clients.firestore_client(settings), written, "done")
    publisher = clients.publisher_client(settings)
    topic = publisher.topic_path(stack.project, BASELINE_TOPIC)

    async def start_one() -> str:
        key = str(uuid.uuid4())
        await asyncio.wrap_future(publisher.publish(topic, b'{"bench": true}', id=key))
        return f"{COLLECTION}/{key}"

    await closed_loop(min(warmup, runs), concurrency, start_one, completions)
    result = await closed_loop(runs, concurrency, start_one, completions)
    completions.close()
    return result


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU each unit's whole process tree has used so far (user + system)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for child in stack.supervisor.children:
        total, todo = 0, [child.process.pid]
        while todo:
            pid = todo.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                # Its own time, and that of the children it has waited for (sandboxed commands).
                total += sum(int(value) for value in fields[11:15])
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
        used[child.name] = total / ticks
    return used


def cpu_per_run(
    before: dict[str, float], after: dict[str, float], runs: int, units: tuple[str, ...]
) -> dict[str, float]:
    """Milliseconds of CPU per run, per unit, for the units that took part."""
    return {name: round((after[name] - before.get(name, 0.0)) * 1000 / runs, 2) for name in units if name in after}


def work_per_run(metrics_dir: Path, runs: int) -> dict[str, Any]:
    totals: dict[str, int] = {}
    for path in metrics_dir.glob("*.json"):
        for name, count in json.loads(path.read_text()).items():
            totals[name] = totals.get(name, 0) + count
    return {name: round(count / runs, 2) for name, count in sorted(totals.items())}
