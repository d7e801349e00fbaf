"""The benchmark's figures as the Markdown table printed and kept in docs/BENCHMARKS.md."""

from __future__ import annotations

from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    e2e = results["end_to_end"]
    p, b, r = e2e["pipeline"], e2e["baseline"], e2e["ratios"]
    m = results["machine"]
    sandbox = results["sandbox"]
    egress = results["egress"]
    inc = results["incremental_save"]
    parts = [
        "# Benchmarks",
        "",
        f"Measured {results['when']} by `make bench` on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['java']}, kernel {m['kernel']}. Figures are judged as ratios against a baseline "
        "measured in the same run; absolute times are for reference only.",
        "",
        "## End to end",
        "",
        f"{p['runs']} runs of `getInstanceStatus` through `POST /api/agent` at concurrency {p['concurrency']}, from POST "
        "to the terminal state in Firestore, against the bare loop publish → emulator push → functions-framework "
        "CloudEvent function → one Firestore write, same emulators, same N and C, each after "
        f"{e2e.get('warmup_runs', 100)} unmeasured runs. A run ends at its document's terminal write (Firestore's own "
        "update time); completion is seen the same way in both loops, by one batched read of the outstanding "
        "documents' status every tenth of the median latency, so the harness reads each document about ten times "
        "in either loop (`harness reads/run`). `loadgen CPU` is the share of one core the load generator used.",
        "",
        _table(
            ["", "runs/s", "p50 ms", "p95 ms", "p99 ms", "failed", "loadgen CPU", "harness reads/run"],
            [
                [
                    "pipeline",
                    p["runs_per_second"],
                    p["p50_ms"],
                    p["p95_ms"],
                    p["p99_ms"],
                    p["failed"],
                    p["loadgen_cpu_share"],
                    p["harness_reads_per_item"],
                ],
                [
                    "baseline",
                    b["runs_per_second"],
                    b["p50_ms"],
                    b["p95_ms"],
                    b["p99_ms"],
                    b["failed"],
                    b["loadgen_cpu_share"],
                    b["harness_reads_per_item"],
                ],
                ["ratio", r["throughput_ratio"], r["p50_ratio"], r["p95_ratio"], r["p99_ratio"], "", "", ""],
            ],
        ),
        "",
        *_floor(results),
        "## Work per run (counted by the units)",
        "",
        _table(["counter", "per run"], [[name, value] for name, value in results["work_per_run"].items()]),
        "",
        "## Sandbox",
        "",
        "`true` through each isolation backend against a bare `/bin/sh -c true` (medians).",
        "",
        _table(
            ["isolation", "repeats", "bare sh ms", "sandboxed ms", "overhead ms"],
            [[b["isolation"], b["repeats"], b["bare_ms"], b["sandboxed_ms"], b["overhead_ms"]] for b in sandbox],
        ),
        "",
        f"Egress: `{egress['command']}` with an empty npm cache each time, bare on this machine against the "
        "same install in a bubblewrap sandbox whose only way out is the egress proxy (medians of "
        f"{egress['repeats']}).",
        "",
        _table(
            ["bare ms", "sandboxed through the proxy ms", "added ms"],
            [[egress["bare_ms"], egress["sandboxed_with_proxy_ms"], egress["added_ms"]]],
        ),
        "",
        "## One owner against a shared job",
        "",
        "The red team's attacks, each through the API as one owner; the job's resident memory (its whole "
        "process tree, sampled every 50 ms) at rest just before and at its peak during the attack.",
        "",
        _table(
            ["attack", "at rest MiB", "peak MiB", "added MiB", "bound MiB"],
            [
                [
                    row["attack"],
                    row["rest_mib"],
                    row["peak_mib"],
                    row["added_mib"],
                    results["tenancy"]["memory_bound_mib"],
                ]
                for row in results["tenancy"]["memory"]
            ],
        ),
        "",
        f"Flood: {results['tenancy']['flood']['actions']} actions (`{results['tenancy']['flood']['each']}`) of one owner "
        f"on as many sessions, then one quick action of another owner: it ended "
        f"{results['tenancy']['flood']['victim_wait_s']} s after it was queued (bound "
        f"{results['tenancy']['flood']['bound_s']} s; an owner holds at most half a job instance's workers).",
        "",
        "## Workspaces (Cloud Storage emulator)",
        "",
        _table(
            ["files", "MiB", "save s", "restore s", "restore when current s"],
            [
                [w["files"], round(w["bytes"] / (1 << 20)), w["save_s"], w["restore_s"], w["restore_current_s"]]
                for w in results["workspaces"]
            ],
        ),
        "",
        f"One changed file in a {inc['files']}-file workspace: save {inc['one_file_save_s']} s (median of 32 in a "
        f"row) against a full save of {inc['full_save_s']} s (median of 3), ratio {inc['ratio']}. With the base "
        f"rewrite every 16th save counted in, the mean one-file save is {inc.get('one_file_save_mean_s')} s, "
        f"ratio {inc.get('mean_ratio')}.",
        "",
        *_apps(results.get("apps")),
        "## Goals",
        "",
        _table(["goal", "met"], [[goal, "yes" if met else "no"] for goal, met in results["goals"].items()]),
        "",
    ]
    return "\n".join(parts)


def _floor(results: dict[str, Any]) -> list[str]:
    fl = results["floor"]
    e2e = results["end_to_end"]
    loops = {"pipeline": e2e["pipeline"], "floor loop": fl["loop"], "one-hop loop (reference)": e2e["baseline"]}
    c1 = fl["concurrency_1"]
    cpu = fl["cpu_ms_per_run"]
    units = sorted(set(cpu["pipeline"]) | set(cpu["floor"]))
    heaviest = max(fl["extra_cpu_ms_per_run"].items(), key=lambda item: item[1])
    waits = round(c1["pipeline"]["p50_ms"] - c1["floor"]["p50_ms"], 1)
    return [
        "## Against the design's own floor",
        "",
        "The floor loop has the design's shape and no application code (`bench/floor.py`): an API handler "
        "that writes one document and publishes, a push to a functions-framework CloudEvent function that "
        "publishes, a push to a functions-framework HTTP function that writes one document; same emulators, "
        "same N, C and completion rule. The pipeline's requests are delivered as Eventarc's own subscription "
        "delivers them (unordered: each push held up to 50 ms to shuffle; 10 s ack deadline).",
        "",
        _table(
            ["loop", "runs/s", "p50 ms", "p95 ms", "p99 ms", "failed"],
            [
                [name, r["runs_per_second"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["failed"]]
                for name, r in loops.items()
            ],
        ),
        "",
        f"Throughput against the floor loop: {fl['ratios']['throughput_ratio']}.",
        "",
        f"Concurrency 1 (an agent's step-by-step loop), {c1['pipeline']['runs']} runs each after warm-up, POST to the "
        "terminal write:",
        "",
        _table(
            ["loop", "p50 ms", "p95 ms", "p99 ms"],
            [
                [name, c1[key]["p50_ms"], c1[key]["p95_ms"], c1[key]["p99_ms"]]
                for key, name in (("pipeline", "pipeline"), ("floor", "floor loop"), ("one_hop", "one-hop loop"))
            ],
        ),
        "",
        f"Concurrency-1 p50 against the floor loop: {fl['ratios']['c1_p50_ratio']} ({waits} ms more per run).",
        "",
        "CPU per run, per unit (its whole process tree, the commands it ran included), at the measured concurrency:",
        "",
        _table(
            ["unit", "pipeline ms/run", "floor ms/run"],
            [[unit, cpu["pipeline"].get(unit, ""), cpu["floor"].get(unit, "")] for unit in units],
        ),
        "",
        f"Where the pipeline spends beyond the floor: most in `{heaviest[0]}` (+{heaviest[1]} ms of CPU a run); "
        "the pipeline's extra hop (the local Eventarc router, which Google Cloud does not have) and the "
        "shuffle's hold (25 ms on average) are waits the floor loop does not have.",
        "",
    ]


def _apps(apps: dict[str, Any] | None) -> list[str]:
    """The react-vite template's real loop, each figure beside its bare counterpart."""
    if not apps:
        return []
    create, build, save = apps["create"], apps["build"], apps["save"]
    return [
        "## Real apps: the react-vite template",
        "",
        f"createInstance through the API (POST to succeeded, dependencies installed), medians of {create['repeats']}: "
        "cold (nothing in Cloud Storage, a new job process), warm cache (the tree in Cloud Storage, a new job "
        "process with an empty disk) and warm job, against `npm ci` of the same lockfile run bare on this machine "
        "with an empty npm cache, as the sandbox's is. Of the warm-cache time, "
        f"{create['warm_cache_dependencies_s']} s went to fetching, checking and unpacking the tree "
        f"({create['cold_dependencies_s']} s to install and store it when cold).",
        "",
        _table(
            ["", "seconds", "vs bare npm ci", "tree from"],
            [
                ["bare npm ci", create["bare_npm_ci_s"], 1.0, "the registry"],
                ["cold", create["cold_s"], round(create["cold_s"] / create["bare_npm_ci_s"], 3), create["cold_source"]],
                [
                    "warm cache, new job process",
                    create["warm_cache_s"],
                    create["warm_cache_vs_bare"],
                    create["warm_cache_source"],
                ],
                ["warm job", create["warm_job_s"], create["warm_job_vs_bare"], "the instance"],
            ],
        ),
        "",
        f"`npm run build` (vite build) through executeCommands, POST to succeeded, against the same build run bare "
        f"in the same workspace (medians of {build['repeats']}); the command's own time in the sandbox beside it.",
        "",
        _table(
            ["bare s", "through executeCommands s", "ratio", "in the sandbox s", "ratio"],
            [
                [
                    build["bare_s"],
                    build["execute_commands_s"],
                    build["ratio"],
                    build["in_sandbox_s"],
                    build["in_sandbox_ratio"],
                ]
            ],
        ),
        "",
        f"A react-vite session after editing `src/App.tsx`: its save, and its restore on another instance that "
        f"holds the installed tree, against a save and a restore of the whole tree ({save['files_in_tree']} files, "
        "dependencies included) as a workspace's own files.",
        "",
        _table(
            ["", "one file s", "one file bytes", "whole tree s", "whole tree bytes", "time ratio", "bytes ratio"],
            [
                [
                    "save",
                    save["one_file_save_s"],
                    save["one_file_save_bytes"],
                    save["full_save_s"],
                    save["full_save_bytes"],
                    save["save_time_ratio"],
                    save["save_bytes_ratio"],
                ],
                [
                    "restore",
                    save["one_file_restore_s"],
                    save["one_file_restore_bytes"],
                    save["full_restore_s"],
                    save["full_restore_bytes"],
                    save["restore_time_ratio"],
                    save["restore_bytes_ratio"],
                ],
            ],
        ),
        "",
    ]
