"""The benchmark's figures as the Markdown table printed and kept in docs/BENCHMARKS.md.

Every figure and note here comes from the results of the run that writes it: nothing is a
constant of this file (the goals' bounds included: they come with the results).
"""

from __future__ import annotations

from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _yes(met: bool) -> str:
    return "yes" if met else "no"


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
        f"Measured {results['began']} to {results['when']} by `make bench` on {m['cores']} cores ({m['cpu']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}, {m['java']}, kernel {m['kernel']}. Figures are judged as "
        "ratios against a baseline measured in the same run; absolute times are for reference only."
        + _job_instances(results),
        "",
        *_conditions(results.get("conditions")),
        "## End to end",
        "",
        f"{p['runs']} runs of `getInstanceStatus` through `POST /api/agent` at concurrency {p['concurrency']}, from POST "
        "to the terminal state in Firestore, against the bare loop publish → emulator push → functions-framework "
        "CloudEvent function → one Firestore write, same emulators, same N and C. Each loop had "
        f"{e2e['warmup_runs']} unmeasured runs first; then the loops (and the two floor loops below) took turns in "
        f"{e2e['rounds']} rounds of {p['runs'] // e2e['rounds']} runs or so, each round in the reverse order of the "
        "last, so that the emulators' growth over the run weighs on each alike. A run ends at its document's "
        "terminal write (Firestore's own update time); completion is seen the same way in both loops, by one "
        f"batched read of the outstanding documents' status every 1/{e2e['polls_per_latency']} of the median "
        f"latency: the harness read each document {p['harness_reads_per_item']} times a run in the pipeline and "
        f"{b['harness_reads_per_item']} in the baseline (`harness reads/run`). `loadgen CPU` is the share of one "
        "core the load generator used.",
        "",
        _table(
            ["", "runs/s", "p50 ms", "mean ms", "p95 ms", "p99 ms", "failed", "loadgen CPU", "harness reads/run"],
            [
                [
                    name,
                    row["runs_per_second"],
                    row["p50_ms"],
                    row["mean_ms"],
                    row["p95_ms"],
                    row["p99_ms"],
                    row["failed"],
                    row["loadgen_cpu_share"],
                    row["harness_reads_per_item"],
                ]
                for name, row in (("pipeline", p), ("baseline", b))
            ]
            + [["ratio", r["throughput_ratio"], r["p50_ratio"], "", r["p95_ratio"], r["p99_ratio"], "", "", ""]],
        ),
        "",
        *_floor(results),
        "## Work per run (counted by the units)",
        "",
        "Over the pipeline's measured rounds only.",
        "",
        _table(["counter", "per run"], [[name, value] for name, value in results["work_per_run"].items()]),
        "",
        "## Sandbox",
        "",
        f"`true` through each isolation backend against a bare `/bin/sh -c true`, {sandbox[0]['repeats']} of each, "
        "alternated: medians, and the means' difference beside them.",
        "",
        _table(
            ["isolation", "repeats", "bare sh ms", "sandboxed ms", "overhead ms", "mean overhead ms"],
            [
                [s["isolation"], s["repeats"], s["bare_ms"], s["sandboxed_ms"], s["overhead_ms"], s["mean_overhead_ms"]]
                for s in sandbox
            ],
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
        *_tenancy(results["tenancy"]),
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
        f"One changed file in a {inc['files']}-file workspace: save {inc['one_file_save_s']} s (median of "
        f"{inc['saves']} in a row) against a full save of {inc['full_save_s']} s (median of {inc['full_saves']}), "
        f"ratio {inc['ratio']}. With the base rewrite every {inc['base_rewrite_every']}th save counted in, the mean "
        f"one-file save is {inc['one_file_save_mean_s']} s, ratio {inc['mean_ratio']}.",
        "",
        *_apps(results.get("apps")),
        *_runner_wait(results.get("runner_wait")),
        *_deployment_manager(results.get("deployment_manager")),
        *_live_preview(results.get("live_preview")),
        *_instances(results),
        *_goals(results["goals"]),
    ]
    return "\n".join(parts)


def _job_instances(results: dict[str, Any]) -> str:
    count = results.get("job_instances")
    if not count:
        return ""
    return (
        f" The stack ran {count} sandbox job instances (VIBESDK_JOB_INSTANCES), each delivery sent to one of them at "
        "random; the job's CPU and work are added up over all of them."
    )


def _instances(results: dict[str, Any]) -> list[str]:
    from bench.report_instances import instances_section  # it uses this module's table

    return instances_section(results.get("overlap_wait"), results.get("first_actions"))


def _noisy(conditions: dict[str, Any]) -> str:
    """The phases that shared the machine with other work: their figures are noisy (the machine is shared)."""
    bound = conditions.get("noisy_other_cores")
    if bound is None:
        return ""
    noisy = [name for name, phase in conditions["phases"].items() if phase["other_cores_mean"] > bound]
    if not noisy:
        return " No phase shared the machine with other work beyond " + f"{bound:g} of a core on average."
    return (
        f" The machine is shared: other work used more than {bound:g} of a core on average during "
        f"{', '.join(noisy)}, so those phases' figures are noisy."
    )


def _conditions(conditions: dict[str, Any] | None) -> list[str]:
    """The machine's load while the bench ran, measured by the bench itself (bench/conditions.py)."""
    if not conditions or not conditions.get("whole"):
        return []
    whole = conditions["whole"]
    return [
        f"Conditions, sampled every {conditions['sample_seconds']:g} s over the run's {whole['seconds']} s: the "
        f"1-minute load average was {whole['load_1m_mean']} on average (at most {whole['load_1m_max']}); work "
        f"outside the benchmark (the machine's busy CPU less the bench's own process tree) used "
        f"{whole['other_cores_mean']} cores on average, at most {whole['other_cores_max']} over a sample."
        + _noisy(conditions)
        + " Per phase:",
        "",
        _table(
            ["phase", "seconds", "load avg (mean)", "load avg (max)", "bench cores", "other cores (mean)", "(max)"],
            [
                [
                    name,
                    phase["seconds"],
                    phase["load_1m_mean"],
                    phase["load_1m_max"],
                    phase["bench_cores_mean"],
                    phase["other_cores_mean"],
                    phase["other_cores_max"],
                ]
                for name, phase in conditions["phases"].items()
            ],
        ),
        "",
    ]


def _floor(results: dict[str, Any]) -> list[str]:
    fl = results["floor"]
    e2e = results["end_to_end"]
    names = {"floor": "floor loop, pushed straight", "floor_routed": "floor loop, through the router"}
    loops = {
        "pipeline": e2e["pipeline"],
        **{names[name]: loop for name, loop in fl["loops"].items()},
        "one-hop loop (reference)": e2e["baseline"],
    }
    c1 = fl["concurrency_1"]
    cpu = fl["cpu_ms_per_run"]
    units = sorted({unit for per_unit in cpu.values() for unit in per_unit})
    delivery = fl["delivery"]
    shuffled, unshuffled = c1["pipeline"], c1["pipeline_unshuffled"]
    c1_rows = (
        ("pipeline", "pipeline"),
        ("floor", names["floor"]),
        ("floor_routed", names["floor_routed"]),
        ("one_hop", "one-hop loop"),
        ("pipeline_unshuffled", "pipeline, the router's shuffle hold off"),
    )
    bins = sorted({start for key, _ in c1_rows for start, _ in c1[key]["histogram_ms"]})
    counts = {key: dict((start, n) for start, n in c1[key]["histogram_ms"]) for key, _ in c1_rows}
    width = c1["histogram_bin_ms"]
    return [
        "## Against the design's own floor",
        "",
        "The floor loop has the design's shape and no application code (`bench/floor.py`): an API handler "
        "that writes one document and publishes, a push to a functions-framework CloudEvent function that "
        "publishes, a push to a functions-framework HTTP function that writes one document; same emulators, "
        "same N, C and completion rule, in the same alternated rounds. The pipeline's requests are delivered as "
        f"Eventarc's own subscription delivers them (`{delivery['mode']}`: unordered, each push held a random "
        f"moment up to {delivery['shuffle_hold_max_ms']:g} ms by the local router to shuffle; "
        f"{delivery['ack_deadline_s']} s ack deadline). The floor loop runs two ways: its requests pushed by the "
        "emulator straight to its CloudEvent function, as before, and through a local Eventarc router of its own "
        "(the same code, the same delivery settings: a trigger of its own, `bench/floor.py`), as the pipeline's "
        "requests travel; against the routed floor the emulation's hop and the shuffle weigh on both sides.",
        "",
        _table(
            ["loop", "runs/s", "p50 ms", "mean ms", "p95 ms", "p99 ms", "failed"],
            [
                [name, r["runs_per_second"], r["p50_ms"], r["mean_ms"], r["p95_ms"], r["p99_ms"], r["failed"]]
                for name, r in loops.items()
            ],
        ),
        "",
        *(
            f"Throughput against the {names[name]}: {ratios['throughput_ratio']} over all rounds (per round: "
            f"{', '.join(str(x) for x in ratios['round_throughput_ratios'])})."
            for name, ratios in fl["ratios"].items()
        ),
        "",
        f"Concurrency 1 (an agent's step-by-step loop), {c1['pipeline']['runs']} runs each, POST to the terminal "
        f"write, in {c1['rounds']} alternated rounds after {fl['c1_warmup_runs']} unmeasured runs each; the pipeline "
        "also with the router's shuffle hold off (the router restarted to switch it, "
        f"{c1['router_restarts']} times, each time followed by unmeasured runs):",
        "",
        _table(
            ["loop", "p50 ms", "mean ms", "p95 ms", "p99 ms", "failed"],
            [
                [name, c1[key]["p50_ms"], c1[key]["mean_ms"], c1[key]["p95_ms"], c1[key]["p99_ms"], c1[key]["failed"]]
                for key, name in c1_rows
            ],
        ),
        "",
        *(
            f"Concurrency-1 p50 against the {names[name]}: {ratios['c1_p50_ratio']} "
            f"({round(c1['pipeline']['p50_ms'] - c1[name]['p50_ms'], 1)} ms more per run); mean "
            f"{ratios['c1_mean_ratio']}, p95 {ratios['c1_p95_ratio']}; p50 per round: "
            f"{', '.join(str(x) for x in ratios['round_c1_p50_ratios'])}."
            for name, ratios in fl["ratios"].items()
        ),
        f"The shuffle's hold, as this run measured it (the pipeline with the hold and without): "
        f"{round(shuffled['mean_ms'] - unshuffled['mean_ms'], 1)} ms a run on the mean, "
        f"{round(shuffled['p50_ms'] - unshuffled['p50_ms'], 1)} ms on the p50. How the runs spread ({width} ms bins; "
        "runs in each):",
        "",
        _table(
            ["ms from", *(name for _, name in c1_rows)],
            [[start, *(counts[key].get(start, 0) for key, _ in c1_rows)] for start in bins],
        ),
        "",
        "CPU per run, per unit (its whole process tree, the commands it ran included), at the measured concurrency, "
        "over the loop's measured rounds:",
        "",
        _table(
            ["unit", "pipeline ms/run", *(f"{names[name]} ms/run" for name in fl["loops"])],
            [[unit, *(cpu[loop].get(unit, "") for loop in ("pipeline", *fl["loops"]))] for unit in units],
        ),
        "",
        *(
            f"Where the pipeline spends beyond the {names[name]}: most in `{unit}` (+{extra} ms of CPU a run)."
            for name, (unit, extra) in (
                (name, max(extra.items(), key=lambda item: item[1]))
                for name, extra in fl["extra_cpu_ms_per_run"].items()
            )
        ),
        "The local Eventarc router is a hop Google Cloud does not have "
        f"({cpu['pipeline'].get('eventarc-router', '')} ms of CPU a run in the pipeline, "
        f"{cpu.get('floor_routed', {}).get('floor-router', '')} in the routed floor loop's): the straight floor has "
        "neither it nor the shuffle's hold, the routed floor both.",
        "",
    ]


def _tenancy(tenancy: dict[str, Any]) -> list[str]:
    flood = tenancy["flood"]
    victim = (
        f"it {flood['victim_status']} {flood['victim_wait_s']} s after it was queued"
        if flood["victim_wait_s"] is not None
        else f"it had not ended after {flood['victim_timeout_s']:g} s"
    )
    flood_ends = ", ".join(f"{count} {status}" for status, count in flood["flood_statuses"].items())
    return [
        "## One owner against a shared job",
        "",
        f"The red team's attacks, each through the API as one owner, sampled every {tenancy['sample_ms']} ms while "
        "it ran: each job instance's resident memory (its whole process tree) at rest just before and at its peak "
        "(the table shows the instance the attack raised most), and the "
        "bytes the attack's commands held in their scratch folder (their /tmp and /dev/shm: a command's /dev/shm is "
        "a folder beside its /tmp, inside the same quota, on the instance's filesystem, which on Cloud Run is in "
        "memory; what a command writes to a file there is not part of the job's resident size). Bounds: the job "
        f"+{tenancy['memory_bound_mib']} MiB, the scratch folder the /tmp quota ({tenancy['tmp_quota_mib']:g} MiB, "
        f"{tenancy['tmp_quota_bytes']} bytes). "
        "Each attack's runs, as they ended:",
        "",
        _table(
            [
                "attack",
                "runs",
                "instance",
                "job at rest MiB",
                "job peak MiB",
                "job added MiB",
                "scratch peak MiB",
                "scratch peak bytes",
            ],
            [
                [
                    row["attack"],
                    row["outcome"],
                    row.get("instance", "sandbox-job"),
                    row["rest_mib"],
                    row["peak_mib"],
                    row["added_mib"],
                    row["scratch_peak_mib"],
                    row["scratch_peak_bytes"],
                ]
                for row in tenancy["memory"]
            ],
        ),
        "",
        f"Flood: {flood['actions']} actions (`{flood['each']}`) of one owner on as many sessions; the job lets one "
        f"owner run {_share(flood)} (its settings). Once {flood['running_when_victim_queued']} "
        "of the flood's actions were running (seen in Firestore), one quick action of another owner was queued: "
        f"{victim} (bound {flood['bound_s']:g} s), with {flood['running_when_victim_ended']} of the flood's actions "
        f"still running then; at most {flood['most_running']} of them ran at once. The flood's actions ended "
        f"{flood_ends}, {flood['flood_s']} s after they were queued (waited for up to {flood['flood_timeout_s']:g} s; "
        "an action over its owner's share is refused and waits for the share: the instance that gives one back "
        "starts the earliest issued, where the retry policy of the trigger's subscription would bring it back "
        f"only {flood['retry_backoff_s'][0]} to {flood['retry_backoff_s'][1]} s after each refusal).",
        "",
    ]


def _share(flood: dict[str, Any]) -> str:
    if "instances" not in flood:
        return f"{flood['owner_share']} actions at once"
    return f"{flood['owner_share']} actions at once over all {flood['instances']} instances"


def _apps(apps: dict[str, Any] | None) -> list[str]:
    """The react-vite template's real loop, each figure beside its bare counterpart."""
    if not apps:
        return []
    create, build, save = apps["create"], apps["build"], apps["save"]
    return [
        "## Real apps: the react-vite template",
        "",
        "createInstance through the API (POST to succeeded, dependencies installed): cold (nothing in Cloud "
        f"Storage, a new job process; one run), warm cache (the tree in Cloud Storage, a new job process with an "
        f"empty disk; median of {create['repeats']}) and warm job (median of {create['repeats']}). The bare "
        f"counterparts are `npm ci` of the same lockfile run bare on this machine (medians of {create['repeats']}, "
        "alternated): with an empty npm cache, as the sandbox's is, so from the registry, and with a warm npm "
        "cache. The cold install against the empty-cache `npm ci` compares like with like (both from the "
        "registry); the warm rows against it compare a cache hit with a registry install (what the cache saves, "
        "not what the runtime costs), and against the warm-cache `npm ci` a cache hit with a bare one. Of the "
        f"warm-cache time, {create['warm_cache_dependencies_s']} s went to fetching, checking and unpacking the tree "
        f"({create['cold_dependencies_s']} s to install and store it when cold).",
        "",
        _table(
            [
                "",
                "seconds",
                "vs bare npm ci, empty npm cache (registry)",
                "vs bare npm ci, warm npm cache",
                "tree from",
            ],
            [
                ["bare npm ci, empty npm cache", create["bare_npm_ci_s"], 1.0, "", "the registry"],
                ["bare npm ci, warm npm cache", create["bare_npm_ci_warm_npm_cache_s"], "", 1.0, "the npm cache"],
                ["cold", create["cold_s"], create["cold_vs_bare"], "", create["cold_source"]],
                [
                    "warm cache, new job process",
                    create["warm_cache_s"],
                    create["warm_cache_vs_bare"],
                    create["warm_cache_vs_bare_warm_npm_cache"],
                    create["warm_cache_source"],
                ],
                [
                    "warm job",
                    create["warm_job_s"],
                    create["warm_job_vs_bare"],
                    create["warm_job_vs_bare_warm_npm_cache"],
                    create["warm_job_source"],
                ],
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
        "dependencies included) as a workspace's own files; one of each.",
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


def _runner_wait(runner: dict[str, Any] | None) -> list[str]:
    """What the runner protocol's synchronous answer adds to the run it waits for, beside /api's wait."""
    if not runner:
        return []
    ways = (("runner", "through /runner (synchronous)"), ("api", f"through /api, then ?wait={runner['api_wait_s']}"))
    return [
        "## The runner protocol's wait",
        "",
        f"Each call at concurrency 1 on one `{runner['template']}` instance, {runner['repeats']} times each way, "
        "alternated after one unmeasured of each: VibSDK's runner request ("
        + ", ".join(f"`{request}`" for request in runner["requests"].values())
        + "), which answers when its run is terminal, against the same action queued through `POST "
        "/api/agent/{s}/actions` and awaited with `GET /api/agent/{s}/runs/{r}?wait=`. Each figure is the p50 of "
        "the answer's arrival (wall clock, `time.time()`, as soon as it is read) minus a moment of the run's end, "
        "all on this machine's one clock: the commit of the run's terminal write in Firestore (the emulator's "
        "update time: what the goal is judged on), the status recorder's `updatedAt` as it made that write, and "
        "the terminal transition's `at` (the job's time when it sent the event: the status topic's delivery "
        "counts in). `call` is the whole call, request to answer.",
        "",
        _table(
            [
                "way",
                "call",
                "answer − terminal commit ms",
                "answer − updatedAt ms",
                "answer − transition at ms",
                "call ms",
            ],
            [
                [label, call, row["commit"], row["updated_at"], row["transition_at"], row["call"]]
                for way, label in ways
                for call, row in (*runner[way]["calls"].items(), ("all calls", runner[way]["all"]))
            ],
        ),
        "",
    ]


def _deployment_manager(manager: dict[str, Any] | None) -> list[str]:
    """VibSDK's DeploymentManager sequence through /runner, call by call, for both versions of the client."""
    if not manager:
        return []
    versions = manager["versions"]
    calls = list(next(iter(versions.values()))["calls_ms"])
    return [
        "## VibSDK's DeploymentManager sequence",
        "",
        f"The calls DeploymentManager makes of the runner, in its order, on `{manager['template']}` with the "
        "dependencies' tree already in Cloud Storage (a warm cache: one unmeasured createInstance first), each "
        "from its request to its answer; created from the template's files (upstream's body, "
        f"{manager['files_sent']} files) and from its name (the Google Cloud port's body), {manager['repeats']} "
        f"sequences of each, alternated: medians. Status is polled every {manager['status_poll_ms']:g} ms until "
        "healthy (polls per sequence: "
        + "; ".join(f"{name}: {', '.join(map(str, v['status_polls']))}" for name, v in versions.items())
        + ")."
        + _spread(manager),
        "",
        _table(
            ["call", *(f"{name} ms" for name in versions)],
            [[call, *(_timed_call(v, call, manager["repeats"]) for v in versions.values())] for call in calls]
            + [["total (median of the sequences' totals)", *(v["total_ms"] for v in versions.values())]],
        ),
        "",
        *(
            f"- {name}, `{call}` failed: {error}"
            for name, v in versions.items()
            for call, error in v.get("failures", {}).items()
        ),
        "",
    ]


def _live_preview(live: dict[str, Any] | None) -> list[str]:
    """A write to a live preview until an open page shows it, against the bare build."""
    if not live:
        return []
    measured = f" (measured {live['began']} to {live['when']} by `python -m bench.live`)" if "began" in live else ""
    return [
        "## A live preview: write to visible",
        "",
        f"{live['writes']} writes of react-vite's root component through `POST /api/agent/{{s}}/actions`, each timed "
        "from the POST until the page, open in headless Chromium and never reloaded by the harness, shows the new "
        "text; against `vite build` run straight on a copy of the job's working copy, "
        f"{len(live['bare_builds_ms'])} times{measured}.",
        "",
        _table(
            ["", "ms"],
            [
                ["write → visible, p50", live["p50_ms"]],
                ["write → visible, p95", live["p95_ms"]],
                ["bare `vite build`, median", live["bare_build_ms"]],
                ["goal: 1.5 × bare + 300 ms", live["bound_ms"]],
                ["writeFiles run (running → succeeded), p50", live["write_run_p50_ms"]],
                [f"refreshPreview run, p50 ({live['refresh_runs']} runs)", live["refresh_run_p50_ms"]],
            ],
        ),
        "",
        f"Bare builds: {', '.join(map(str, live['bare_builds_ms']))} ms. "
        f"Writes: {', '.join(map(str, live['latencies_ms']))} ms.",
        "",
    ]


def _spread(manager: dict[str, Any]) -> str:
    """Which job instances started each sequence's runs (their logs), when the results say."""
    if "instances" not in manager:
        return ""
    each = "; ".join(
        f"{name}: " + ", ".join(" + ".join(f"{n} on {unit}" for unit, n in sorted(ran.items())) for ran in v["ran_on"])
        for name, v in manager["versions"].items()
        if "ran_on" in v
    )
    return f" {manager['instances']} job instances; each sequence's runs, by the instance that started them: {each}."


def _timed_call(version: dict[str, Any], call: str, repeats: int) -> str:
    failed = version.get("failed_sequences", {}).get(call, 0)
    return f"{version['calls_ms'][call]}" + (f" (failed in {failed} of {repeats})" if failed else "")


def _goals(goals: list[dict[str, Any]]) -> list[str]:
    """Each goal with the statistic it is judged on; the other statistics beside it, marked where they disagree."""

    def others(item: dict[str, Any]) -> str:
        shown = []
        for o in item["others"]:
            mark = " (disagrees)" if o["met"] != item["met"] and not item["invalid"] else ""
            shown.append(f"{o['statistic']}: {o['value']}, {_yes(o['met'])}{mark}")
        return "; ".join(shown)

    def measured(item: dict[str, Any]) -> str:
        value = "not measured" if item["value"] is None else str(item["value"])
        return value + (f" (not a test of the goal: {item['invalid']})" if item["invalid"] else "")

    return [
        "## Goals",
        "",
        "Each goal is judged on the statistic named beside it; the other statistics of the same figures are "
        "shown with their own verdicts, marked where they disagree.",
        "",
        _table(
            ["goal", "judged on", "measured", "met", "other statistics"],
            [[g["goal"], g["judged_on"], measured(g), _yes(g["met"]), others(g)] for g in goals],
        ),
        "",
    ]
