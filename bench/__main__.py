"""`make bench`: end-to-end against the bare emulator loop, work per run, sandbox and workspace costs.

Prints a table and writes bench/results.json and docs/BENCHMARKS.md. Sizes: BENCH_RUNS (500),
BENCH_CONCURRENCY (32), BENCH_C1_RUNS (200), BENCH_ROUNDS (4), BENCH_SANDBOX_REPEATS (200),
BENCH_WORKSPACE_FILES (10,1000,10000), BENCH_RUNNER_REPEATS (20 of each runner call each way),
BENCH_MANAGER_REPEATS (2 DeploymentManager sequences of each version), BENCH_LIVE_WRITES (20 writes
to an open live preview; `python -m bench.live` runs that part alone), BENCH_OVERLAP_ROUNDS (20 rounds
of a sleep and two actions queued at once), BENCH_FIRST_ACTION_REPEATS (5 sessions of each template,
each one's first action pushed to the instance that did not create it).

The stack runs as many sandbox job instances as VIBESDK_JOB_INSTANCES says (two by default, as Cloud
Run runs many): each delivery goes to one of them; the job's CPU and work are added up over them all.

Loops that are compared are measured in alternated rounds (A B C, then C B A, ...) on the same
emulators, so the emulators' growth over the run favours none of them.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floor
from bench.apps import app_costs
from bench.conditions import Conditions
from bench.costs import egress_cost, incremental_save, sandbox_overhead, workspace_costs
from bench.goals import goal, other
from bench.instances import first_actions, instance_goals, overlap_wait
from bench.live import live_goal, live_preview
from bench.load import POLLS_PER_LATENCY, LoadResult, combined
from bench.manager import manager_sequence
from bench.pipeline import (
    WARMUP_RUNS,
    add_up,
    cpu_seconds,
    cpu_used,
    measure_baseline,
    measure_floor,
    measure_pipeline,
    per_run_ms,
    set_shuffle,
    shuffle_seconds,
    start_baseline_function,
    work_per_run,
    work_totals,
)
from bench.runner import runner_wait
from bench.tenancy import attacks
from devstack.config import JOB_UNIT, Ports
from devstack.stack import PROJECT_ROOT, Stack, start_stack
from eventarc.definitions import SANDBOX_JOB_TRIGGER
from eventarc.router import delivery_mode
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import storage_for

BENCH_PORTS = Ports.shifted(14000)
FLOOR_PORTS = {"floor-api": 14090, "floor-job": 14091, "floor-recorder": 14092, "floor-router": 14093}
# The two floor loops: pushed straight to the floor's function, and through a router as the pipeline is.
FLOORS = ("floor", "floor_routed")
FLOOR_NAMES = {"floor": "floor loop (pushed straight)", "floor_routed": "routed floor loop (through the router)"}
C1_WARMUP = 20
# The actions pushed to an instance after a session's first there: what the first is measured against.
FIRST_ACTION_NEXTS = 3
EMULATORS = ("pubsub-emulator", "firestore-emulator", "storage-emulator")
FLOOR_UNITS = {"floor": (*floor.UNITS, *EMULATORS), "floor_routed": (*floor.ROUTED_UNITS, *EMULATORS)}
BASELINE_PORT = 22090
# The units count their work every half second (vibesdk_gcp/metrics.py): three flushes.
FLUSH_WAIT_SECONDS = 1.5
C1_HISTOGRAM_MS = 25
# The pipeline's units besides the sandbox job's instances (Stack.job_units: two by default).
PIPELINE_SERVICES = ("control-plane", "eventarc-router", "status-recorder")
# The one-hop goals are retired (docs/PERFORMANCE.md): the floor loop is the yardstick now.
GOALS = {
    "throughput_vs_floor_min": 0.6,
    "c1_p50_vs_floor_max": 1.2,
    "isolation_overhead_ms_max": 15.0,
    "one_file_save_ratio_max": 0.05,
}


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")), "0"
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "java": subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0],
    }


def pipeline_units(stack: Stack) -> tuple[str, ...]:
    return (*PIPELINE_SERVICES, *stack.job_units, *EMULATORS)


def counting_units(stack: Stack) -> tuple[str, ...]:
    """The pipeline's units that count their work (VIBESDK_UNIT); the emulators count none."""
    return (*PIPELINE_SERVICES, *stack.job_units)


def jobs_added_up(stack: Stack, per_unit: dict[str, float]) -> dict[str, float]:
    """The job's instances as one unit, `sandbox-job`: what the job costs, however many run it."""
    folded = {unit: value for unit, value in per_unit.items() if unit not in stack.job_units}
    jobs = [value for unit, value in per_unit.items() if unit in stack.job_units]
    if jobs:
        folded[JOB_UNIT] = sum(jobs)
    return folded


def _sizes(total: int, rounds: int) -> list[int]:
    """`total` runs split over `rounds` as evenly as can be."""
    return [total // rounds + (index < total % rounds) for index in range(rounds)]


def _order(loops: tuple[str, ...], index: int) -> tuple[str, ...]:
    """A B C, then C B A, then A B C...: a drift over the run weighs on every loop alike."""
    return loops if index % 2 == 0 else loops[::-1]


def end_to_end(
    stack: Stack, floor_url: str, runs: int, concurrency: int, rounds: int, metrics_dir: Path
) -> dict[str, Any]:
    """The pipeline, the one-hop baseline and the two floor loops at `concurrency`, in alternated rounds.

    Each loop first gets its WARMUP_RUNS unmeasured; then `rounds` rounds, each loop once per round.
    CPU per unit and the work counts are taken around each of the loop's own rounds only.
    """
    drivers = {
        "pipeline": lambda n: measure_pipeline(stack, n, concurrency, warmup=0),
        "baseline": lambda n: measure_baseline(stack, n, concurrency, warmup=0),
        "floor": lambda n: measure_floor(stack, floor_url, n, concurrency, warmup=0),
        "floor_routed": lambda n: measure_floor(stack, floor_url, n, concurrency, warmup=0, path="/routed/run"),
    }
    units: dict[str, tuple[str, ...]] = {"pipeline": pipeline_units(stack), "baseline": (), **FLOOR_UNITS}
    for drive in drivers.values():
        asyncio.run(drive(WARMUP_RUNS))
    time.sleep(FLUSH_WAIT_SECONDS)
    counted_before = work_totals(metrics_dir, counting_units(stack))
    counted: dict[str, float] = {}
    parts: dict[str, list[LoadResult]] = {name: [] for name in drivers}
    cpu: dict[str, dict[str, float]] = {name: {} for name in drivers}
    for index, size in enumerate(_sizes(runs, rounds)):
        for name in _order(tuple(drivers), index):
            before = cpu_seconds(stack)
            parts[name].append(asyncio.run(drivers[name](size)))
            add_up(cpu[name], jobs_added_up(stack, cpu_used(before, cpu_seconds(stack), units[name])))
            if name == "pipeline":
                time.sleep(FLUSH_WAIT_SECONDS)
                counted_after = work_totals(metrics_dir, counting_units(stack))
                add_up(counted, {key: counted_after[key] - counted_before.get(key, 0) for key in counted_after})
                counted_before = counted_after
    loops = {name: combined(results) for name, results in parts.items()}
    return {
        "rounds": rounds,
        "loops": loops,
        "round_throughput_vs": {
            name: [round(p.per_second / f.per_second, 3) for p, f in zip(parts["pipeline"], parts[name], strict=True)]
            for name in FLOORS
        },
        "cpu_ms_per_run": {name: per_run_ms(cpu[name], loops[name].runs) for name in ("pipeline", *FLOORS)},
        "work_per_run": work_per_run(counted, loops["pipeline"].runs),
    }


def concurrency_1(stack: Stack, floor_url: str, runs: int, rounds: int) -> dict[str, Any]:
    """The four loops one run at a time, and the pipeline with the router's shuffle hold off, alternated.

    The router is restarted to switch its hold off and back (each time followed by unmeasured runs);
    the order of the rounds keeps that to two restarts every two rounds.
    """
    drivers = {
        "pipeline": lambda n: measure_pipeline(stack, n, 1, warmup=0),
        "floor": lambda n: measure_floor(stack, floor_url, n, 1, warmup=0),
        "floor_routed": lambda n: measure_floor(stack, floor_url, n, 1, warmup=0, path="/routed/run"),
        "one_hop": lambda n: measure_baseline(stack, n, 1, warmup=0),
        "pipeline_unshuffled": lambda n: measure_pipeline(stack, n, 1, warmup=0),
    }
    hold = shuffle_seconds(stack)
    shuffled = True
    for name in ("pipeline", *FLOORS, "one_hop"):
        asyncio.run(drivers[name](C1_WARMUP))
    parts: dict[str, list[LoadResult]] = {name: [] for name in drivers}
    restarts = 0
    for index, size in enumerate(_sizes(runs, rounds)):
        for name in _order(tuple(drivers), index):
            wanted = name != "pipeline_unshuffled"
            if name.startswith("pipeline") and wanted != shuffled:
                set_shuffle(stack, None if wanted else 0)
                shuffled, restarts = wanted, restarts + 1
                asyncio.run(drivers[name](C1_WARMUP))
            parts[name].append(asyncio.run(drivers[name](size)))
    if not shuffled:
        set_shuffle(stack, None)  # back to the default for what follows; not counted: no run of this part follows
    loops = {name: combined(results) for name, results in parts.items()}
    summary = {name: loop.summary() | {"histogram_ms": loop.histogram(C1_HISTOGRAM_MS)} for name, loop in loops.items()}
    return {
        **summary,
        "rounds": rounds,
        "histogram_bin_ms": C1_HISTOGRAM_MS,
        "shuffle_hold_max_ms": round(hold * 1000, 1),
        "router_restarts": restarts,
        "round_p50_vs": {
            name: [
                round(p.percentile(50) / f.percentile(50), 3)
                for p, f in zip(parts["pipeline"], parts[name], strict=True)
            ]
            for name in FLOORS
        },
    }


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that finally stops the stack
    runs = int(os.environ.get("BENCH_RUNS", "500"))
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    repeats = int(os.environ.get("BENCH_SANDBOX_REPEATS", "200"))
    c1_runs = int(os.environ.get("BENCH_C1_RUNS", "200"))
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    sizes = [int(n) for n in os.environ.get("BENCH_WORKSPACE_FILES", "10,1000,10000").split(",")]
    metrics_dir = Path(tempfile.mkdtemp(prefix="vibesdk-metrics-"))
    env = dict(os.environ) | {
        "VIBESDK_METRICS_DIR": str(metrics_dir),
        "VIBESDK_API_TOKEN": "bench",
        # One owner posting as fast as it can: the per-owner limits step aside.
        "VIBESDK_REQUESTS_PER_MINUTE": "1000000",
        "VIBESDK_MAX_ACTIVE_RUNS_PER_OWNER": "100000",
        # The flood's share over both instances, as one instance's was: each long action holds its
        # push to the 10 s ack deadline and the emulator pushes only a few at once, so a share of
        # half of all 16 workers was never reached (tests/reliability/harness.py says the same).
        "VIBESDK_MAX_ACTIONS_PER_OWNER": "4",
    }
    conditions = Conditions()
    conditions.start()
    began = datetime.now(UTC)
    # Each part on an otherwise idle stack: the sandbox before anything starts, workspaces
    # before the load has warmed (and littered) the emulators.
    conditions.phase("sandbox")
    print(f"sandbox: {repeats} commands each way, per isolation backend", flush=True)
    isolation = [sandbox_overhead(repeats, backend) for backend in ("bubblewrap", "cloud-run")]
    conditions.phase("egress")
    print("egress: npm install bare and through the proxy", flush=True)
    egress = egress_cost(int(os.environ.get("BENCH_EGRESS_REPEATS", "5")))
    conditions.phase("stack start")
    print(f"starting the stack; {runs} runs at concurrency {concurrency} in {rounds} rounds", flush=True)
    stack = start_stack(BENCH_PORTS, env, Path(tempfile.mkdtemp(prefix="vibesdk-bench-logs-")))
    try:
        conditions.phase("workspaces")
        storage = storage_for(Settings.from_env(stack.env))
        cases = [(files, 1 << 20) for files in sizes] + [(10, 10 << 20), (10, 100 << 20)]
        incremental = incremental_save(storage)
        workspaces = workspace_costs(storage, cases)
        start_baseline_function(stack, BASELINE_PORT)
        floor.start(stack, FLOOR_PORTS)
        floor_url = f"http://127.0.0.1:{FLOOR_PORTS['floor-api']}"
        conditions.phase("end to end")
        e2e = end_to_end(stack, floor_url, runs, concurrency, rounds, metrics_dir)
        conditions.phase("concurrency 1")
        print(f"concurrency 1: {c1_runs} runs each, pipeline (shuffle on and off), both floors, one-hop", flush=True)
        c1 = concurrency_1(stack, floor_url, c1_runs, rounds)
        delivery = delivery_mode(stack.env)
        ack_deadline = SANDBOX_JOB_TRIGGER.subscription(delivery).ack_deadline_seconds
        conditions.phase("react-vite")
        print("react-vite: createInstance cold and warm, a build, a one-file save", flush=True)
        apps = app_costs(stack, env["VIBESDK_API_TOKEN"], int(os.environ.get("BENCH_APP_REPEATS", "3")))
        conditions.phase("runner wait")
        runner_repeats = int(os.environ.get("BENCH_RUNNER_REPEATS", "20"))
        print(f"runner: {runner_repeats} of each call through /runner and through /api with ?wait=", flush=True)
        runner = runner_wait(stack, env["VIBESDK_API_TOKEN"], runner_repeats)
        conditions.phase("deployment manager")
        manager_repeats = int(os.environ.get("BENCH_MANAGER_REPEATS", "2"))
        print(f"DeploymentManager's sequence on react-vite, {manager_repeats} of each version", flush=True)
        manager = manager_sequence(stack, env["VIBESDK_API_TOKEN"], manager_repeats)
        conditions.phase("overlap wait")
        overlap_rounds = int(os.environ.get("BENCH_OVERLAP_ROUNDS", "20"))
        print(
            f"overlap wait: {overlap_rounds} rounds of a sleep, then getLogs and clearInstanceErrors at once",
            flush=True,
        )
        overlap = overlap_wait(stack, env["VIBESDK_API_TOKEN"], overlap_rounds)
        conditions.phase("first action on an instance")
        first_repeats = int(os.environ.get("BENCH_FIRST_ACTION_REPEATS", "5"))
        print(f"first action on an instance: {first_repeats} sessions of each template", flush=True)
        firsts = first_actions(stack, env["VIBESDK_API_TOKEN"], first_repeats, FIRST_ACTION_NEXTS)
        conditions.phase("live preview")
        live_writes = int(os.environ.get("BENCH_LIVE_WRITES", "20"))
        print(f"live preview: {live_writes} writes to react-vite, each until an open page shows it", flush=True)
        live = live_preview(stack, env["VIBESDK_API_TOKEN"], live_writes)
        conditions.phase("tenancy")
        print("one owner against the shared job: memory under attack, another owner's wait", flush=True)
        tenancy = attacks(stack, env["VIBESDK_API_TOKEN"])
    finally:
        conditions.stop()
        stack.stop()
    pipeline, baseline = e2e["loops"]["pipeline"], e2e["loops"]["baseline"]
    p, b = pipeline.summary(), baseline.summary()
    cpu = e2e["cpu_ms_per_run"]
    ratios = {
        "throughput_ratio": round(pipeline.per_second / baseline.per_second, 3),
        "p50_ratio": round(pipeline.percentile(50) / baseline.percentile(50), 3),
        "p95_ratio": round(pipeline.percentile(95) / baseline.percentile(95), 3),
        "p99_ratio": round(pipeline.percentile(99) / baseline.percentile(99), 3),
    }
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "began": began.isoformat(timespec="seconds"),
        "machine": machine(),
        "conditions": conditions.summary(),
        "end_to_end": {
            "pipeline": p,
            "baseline": b,
            "ratios": ratios,
            "warmup_runs": WARMUP_RUNS,
            "rounds": rounds,
            "polls_per_latency": POLLS_PER_LATENCY,
        },
        "work_per_run": e2e["work_per_run"],
        "floor": {
            "loops": {name: e2e["loops"][name].summary() for name in FLOORS},
            "ratios": {name: floor_ratios(e2e, c1, name) for name in FLOORS},
            "concurrency_1": c1,
            "c1_warmup_runs": C1_WARMUP,
            "delivery": {
                "mode": delivery,
                "shuffle_hold_max_ms": c1["shuffle_hold_max_ms"],
                "ack_deadline_s": ack_deadline,
            },
            "cpu_ms_per_run": cpu,
            "extra_cpu_ms_per_run": {name: extra_cpu_ms(cpu["pipeline"], cpu[name]) for name in FLOORS},
        },
        "sandbox": isolation,
        "egress": egress,
        "tenancy": tenancy,
        "workspaces": workspaces,
        "incremental_save": incremental,
        "apps": apps,
        "runner_wait": runner,
        "deployment_manager": manager,
        "live_preview": live,
        "job_instances": stack.job_count,
        "overlap_wait": overlap,
        "first_actions": firsts,
    }
    results["goals"] = goals(results, apps["goals"]) + [live_goal(live)] + instance_goals(overlap, firsts)
    from bench.report import markdown

    text = markdown(results)
    print(text)
    (PROJECT_ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (PROJECT_ROOT / "docs" / "BENCHMARKS.md").write_text(text)


def floor_ratios(e2e: dict[str, Any], c1: dict[str, Any], name: str) -> dict[str, Any]:
    """The pipeline against one of the floor loops."""
    pipeline, floor_loop = e2e["loops"]["pipeline"], e2e["loops"][name]
    return {
        "throughput_ratio": round(pipeline.per_second / floor_loop.per_second, 3),
        "c1_p50_ratio": round(c1["pipeline"]["p50_ms"] / c1[name]["p50_ms"], 3),
        "c1_mean_ratio": round(c1["pipeline"]["mean_ms"] / c1[name]["mean_ms"], 3),
        "c1_p95_ratio": round(c1["pipeline"]["p95_ms"] / c1[name]["p95_ms"], 3),
        "round_throughput_ratios": e2e["round_throughput_vs"][name],
        "round_c1_p50_ratios": c1["round_p50_vs"][name],
    }


def extra_cpu_ms(pipeline: dict[str, float], floor_loop: dict[str, float]) -> dict[str, float]:
    """CPU a run of the pipeline's units beyond their counterparts' in a floor loop (0 where it has none)."""
    return {
        unit: round(pipeline.get(unit, 0.0) - floor_loop.get(counterpart, 0.0), 2)
        for unit, counterpart in (
            ("control-plane", "floor-api"),
            (JOB_UNIT, "floor-job"),
            ("status-recorder", "floor-recorder"),
            ("eventarc-router", "floor-router"),
            *((name, name) for name in EMULATORS),
        )
    }


def goals(results: dict[str, Any], app_goals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every goal with the statistic it is judged on, and the other statistics beside it."""
    fl, e2e = results["floor"], results["end_to_end"]
    c1 = fl["concurrency_1"]
    bwrap, inc, tenancy = results["sandbox"][0], results["incremental_save"], results["tenancy"]
    flood, attacks_run = tenancy["flood"], tenancy["memory"]
    runner = results["runner_wait"]
    throughput_min, c1_max = GOALS["throughput_vs_floor_min"], GOALS["c1_p50_vs_floor_max"]
    not_run = [row["attack"] for row in attacks_run if not row["ran"]]
    shm = next(row for row in attacks_run if "/dev/shm" in row["attack"])
    flood_invalid = []
    if not flood["occupied"]:
        flood_invalid.append(
            f"the flood held {flood['running_when_victim_queued']} of the owner's {flood['owner_share']} workers "
            "when the victim was queued"
        )
    if flood["victim_status"] != "succeeded":
        flood_invalid.append(f"the victim's action: {flood['victim_status']}")
    floor_goals = []
    for name, ratios in fl["ratios"].items():
        against = FLOOR_NAMES[name]
        floor_goals += [
            goal(
                f"throughput >= {throughput_min:g} x {against}",
                f"runs/s over all {e2e['pipeline']['runs']} runs of each loop ({e2e['rounds']} alternated rounds)",
                ratios["throughput_ratio"],
                throughput_min,
                at_most=False,
                others=[
                    other("lowest round", min(ratios["round_throughput_ratios"]), throughput_min, at_most=False),
                    other("highest round", max(ratios["round_throughput_ratios"]), throughput_min, at_most=False),
                ],
            ),
            goal(
                f"concurrency-1 p50 <= {c1_max:g} x {against}",
                f"p50 of {c1['pipeline']['runs']} runs each",
                ratios["c1_p50_ratio"],
                c1_max,
                others=[
                    other("mean", ratios["c1_mean_ratio"], c1_max),
                    other("p95", ratios["c1_p95_ratio"], c1_max),
                    other("p50, highest round", max(ratios["round_c1_p50_ratios"]), c1_max),
                ],
            ),
        ]
    return [
        *floor_goals,
        goal(
            f"runner call's wait adds <= {runner['goal_ms']:g} ms at p50",
            f"p50 over {runner['repeats']} of each of {len(runner['actions'])} calls: the answer's arrival minus the "
            "run's terminal write (its commit time in Firestore)",
            runner["runner"]["all"]["commit"],
            runner["goal_ms"],
            others=[
                *(
                    other(f"{call} alone", row["commit"], runner["goal_ms"])
                    for call, row in runner["runner"]["calls"].items()
                ),
                other("from the recorder's updatedAt", runner["runner"]["all"]["updated_at"], runner["goal_ms"]),
            ],
        ),
        goal(
            f"isolation overhead <= {GOALS['isolation_overhead_ms_max']:g} ms (bubblewrap)",
            f"median of {bwrap['repeats']} sandboxed minus median of {bwrap['repeats']} bare",
            bwrap["overhead_ms"],
            GOALS["isolation_overhead_ms_max"],
            others=[
                other("mean minus mean", bwrap["mean_overhead_ms"], GOALS["isolation_overhead_ms_max"]),
                other("p95 minus p95", bwrap["p95_overhead_ms"], GOALS["isolation_overhead_ms_max"]),
            ],
        ),
        goal(
            f"one-file save <= {GOALS['one_file_save_ratio_max']:.0%} of full save",
            f"median of {inc['saves']} one-file saves in a row against the median of {inc['full_saves']} full saves",
            inc["ratio"],
            GOALS["one_file_save_ratio_max"],
            others=[
                other(
                    f"mean of the {inc['saves']} (the base rewrite every {inc['base_rewrite_every']}th counted in)",
                    inc["mean_ratio"],
                    GOALS["one_file_save_ratio_max"],
                )
            ],
        ),
        goal(
            f"job's resident memory under each attack <= +{tenancy['memory_bound_mib']} MiB",
            f"peak of {tenancy['sample_ms']} ms samples of the job's process tree minus at rest; the worst attack",
            max(row["added_mib"] for row in attacks_run),
            tenancy["memory_bound_mib"],
            invalid="; ".join(f"{name}: its commands did not run" for name in not_run),
        ),
        goal(
            f"bytes an attack holds in its /tmp and /dev/shm <= the /tmp quota ({tenancy['tmp_quota_bytes']} bytes)",
            f"peak of {tenancy['sample_ms']} ms samples of its scratch folder's allocated bytes; the worst attack",
            max(row["scratch_peak_bytes"] for row in attacks_run),
            tenancy["tmp_quota_bytes"],
            invalid="; ".join(
                [f"{name}: its commands did not run" for name in not_run]
                + ([] if shm["scratch_folders_seen"] else [f"{shm['attack']}: no scratch folder seen"])
            ),
        ),
        goal(
            f"victim's wait under a flood <= {flood['bound_s']:g} s",
            "one action, queued once the flood held the owner's share of the job",
            flood["victim_wait_s"],
            flood["bound_s"],
            invalid="; ".join(flood_invalid),
        ),
        *app_goals,
    ]


if __name__ == "__main__":
    main()
