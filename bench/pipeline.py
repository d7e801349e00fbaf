"""End to end against the bare emulator loop, on the same emulators, same N and C."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.baseline import COLLECTION
from bench.conditions import tree_seconds
from bench.floor import push_subscription
from bench.load import Completions, LoadResult, closed_loop, run_outcome, written
from devstack.config import HOST
from devstack.stack import PROJECT_ROOT, Stack
from eventarc.router import SHUFFLE_SECONDS
from vibesdk_gcp import clients
from vibesdk_gcp.names import RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.settings import Settings

BASELINE_TOPIC = "bench-baseline"
CHEAP_ACTION = {"templateName": "static-site", "action": "getInstanceStatus"}
# Unmeasured runs first, at full concurrency: the emulators' JIT warms up on them, for both loops.
WARMUP_RUNS = 100
SHUFFLE_VARIABLE = "VIBESDK_EVENTARC_SHUFFLE_SECONDS"


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

        if warmup:
            await closed_loop(min(warmup, runs), concurrency, start_one, completions)
        result = await closed_loop(runs, concurrency, start_one, completions)
    completions.close()
    return result


async def measure_floor(
    stack: Stack, api_url: str, runs: int, concurrency: int, warmup: int = WARMUP_RUNS, path: str = "/run"
) -> LoadResult:
    """The floor loop (bench/floor.py), driven and timed exactly as the pipeline is; `path`: its way in."""
    firestore = clients.firestore_client(Settings.from_env(stack.env))
    completions = Completions(asyncio.get_running_loop(), firestore, run_outcome, "status")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url, limits=limits, timeout=60) as http:

        async def start_one() -> str:
            response = await http.post(path)
            response.raise_for_status()
            return str(response.json()["path"])

        if warmup:
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

    if warmup:
        await closed_loop(min(warmup, runs), concurrency, start_one, completions)
    result = await closed_loop(runs, concurrency, start_one, completions)
    completions.close()
    return result


def cpu_seconds(stack: Stack) -> dict[str, float]:
    """CPU each unit's whole process tree has used so far (user + system)."""
    # Each tree's own time and that of the children it has waited for (sandboxed commands).
    return {child.name: tree_seconds(child.process.pid) for child in stack.supervisor.children}


def cpu_used(before: dict[str, float], after: dict[str, float], units: tuple[str, ...]) -> dict[str, float]:
    """Seconds of CPU each of the units that took part used between two readings."""
    return {name: after[name] - before.get(name, 0.0) for name in units if name in after}


def add_up(total: dict[str, float], more: dict[str, float]) -> None:
    for name, value in more.items():
        total[name] = total.get(name, 0.0) + value


def per_run_ms(seconds: dict[str, float], runs: int) -> dict[str, float]:
    """Milliseconds of CPU per run, per unit."""
    return {name: round(value * 1000 / runs, 2) for name, value in seconds.items()}


def work_totals(metrics_dir: Path, units: tuple[str, ...]) -> dict[str, float]:
    """The counts the units have flushed so far (`<unit>-<pid>.json`), added up over the given units."""
    totals: dict[str, float] = {}
    for path in metrics_dir.glob("*.json"):
        if path.stem.rsplit("-", 1)[0] in units:
            add_up(totals, json.loads(path.read_text()))
    return totals


def work_per_run(counted: dict[str, float], runs: int) -> dict[str, Any]:
    return {name: round(count / runs, 2) for name, count in sorted(counted.items())}


def set_shuffle(stack: Stack, seconds: float | None) -> None:
    """Restart the local Eventarc router with its shuffle hold set (0: off; None: its default)."""
    old = stack.supervisor.child("eventarc-router")
    stack.supervisor.kill("eventarc-router", signal.SIGTERM)
    env = {key: value for key, value in old.env.items() if key != SHUFFLE_VARIABLE}
    if seconds is not None:
        env[SHUFFLE_VARIABLE] = str(seconds)
    stack.supervisor.children.remove(old)
    child = stack.supervisor.start(old.name, old.argv, env, old.cwd)
    stack.supervisor.wait_for_port(child, HOST, stack.ports.eventarc_router)


def shuffle_seconds(stack: Stack) -> float:
    """The hold the router applies to each push (as eventarc/router.py reads it)."""
    return float(stack.supervisor.child("eventarc-router").env.get(SHUFFLE_VARIABLE) or SHUFFLE_SECONDS)
