"""The Markdown of issue 25's benchmarks (bench/instances.py): the overlap wait and a session's first
action on an instance. Every figure comes from the results of the run that writes it."""

from __future__ import annotations

from typing import Any

from bench.report import _table


def instances_section(overlap: dict[str, Any] | None, firsts: dict[str, Any] | None) -> list[str]:
    parts: list[str] = []
    if overlap:
        parts += _overlap(overlap)
    if firsts:
        parts += _firsts(firsts)
    return parts


def _overlap(overlap: dict[str, Any]) -> list[str]:
    rows = (
        ("behind the sleep", overlap["behind_the_sleep"]),
        ("behind a quick action", overlap["behind_a_quick_action"]),
    )
    return [
        "## A session's overlapping actions across instances",
        "",
        f"{overlap['rounds']} rounds on one static-site session, {overlap['instances']} job instances: "
        f"`{overlap['earlier']}` (executeCommands), then {' and '.join(overlap['later'])} queued together the moment "
        "its POST answered, as VibSDK's DeploymentManager queues them (a `Promise.all`); each delivery goes to either "
        "instance at random, as the router spreads them. Each consecutive pair in queued order is timed on the job's "
        "clock (the runs' transitions): the later's end after the earlier's end, and the later's start after it; the "
        "job's logs say which instance ran each (`ran on two`: the two runs on different instances) and which "
        "refused a delivery for the order (`spread over two`: the later delivered to, or run on, another instance "
        "than the earlier). 'Behind the sleep' pairs the sleep with the first quick action, 'behind a quick "
        "action' the two quick ones. A later run whose delivery came before the earlier ended was refused for the "
        "order (`refused`, its run's refusedAt) and started by the instance that ended the earlier, so a pair "
        "spread over two instances mostly runs on one; "
        f"{overlap['queued_while_earlier_ran']} of the {overlap['rounds']} first quick actions were queued while the "
        "sleep had not ended.",
        "",
        _table(
            [
                "pairs",
                "n",
                "end after p50 s",
                "p95 s",
                "max s",
                "start after p50 s",
                "p95 s",
                "max s",
                "spread over two",
                "ran on two",
                "refused",
                "ran at once",
                "failed",
            ],
            [
                [
                    name,
                    s["pairs"],
                    s["end_after_p50_s"],
                    s["end_after_p95_s"],
                    s["end_after_max_s"],
                    s["start_after_p50_s"],
                    s["start_after_p95_s"],
                    s["start_after_max_s"],
                    s["spread_over_instances"],
                    s["on_different_instances"],
                    s["later_refused"],
                    s["overlapping"],
                    s["failed"],
                ]
                for name, s in rows
            ],
        ),
        "",
    ]


def _firsts(firsts: dict[str, Any]) -> list[str]:
    if "skipped" in firsts:
        return ["## A session's first action on an instance", "", f"Not measured: {firsts['skipped']}.", ""]
    rows = []
    for template, found in firsts["templates"].items():
        for key, label in (
            ("push_s", "the push (whole)"),
            ("run_s", "the run, running → succeeded"),
            ("command_s", "`echo` in the sandbox"),
        ):
            row = found[key]
            rows.append([template, label, row["first"], row["next"], row["ratio"]])
        for key, label in (("restore_s", "its restore, s"), ("restore_bytes", "its restore, bytes read")):
            row = found.get(key) or {}
            rows.append([template, label, row.get("first", "–"), row.get("next", "–"), ""])
    samples = "; ".join(
        f"{template}: {', '.join(map(str, found['first_push_samples_s']))} s"
        for template, found in firsts["templates"].items()
    )
    return [
        "## A session's first action on an instance",
        "",
        f"For each template, {firsts['repeats']} sessions created through the API (on whichever instance the delivery "
        "reached), each at rest; then `echo first` (executeCommands) queued in Firestore and pushed as Eventarc's "
        "CloudEvent straight to the other instance (never published, so only that push runs it): the session's first "
        f"action on that instance; then {firsts['nexts']} more pushed there, the next actions. Before them each "
        "instance ran a createInstance of the template (for react-vite: the instance holds its dependency tree). "
        "Medians. The breakdown: the push's whole time, the run's own (running to succeeded, the job's clock), "
        "the command's in the sandbox, and the workspace restore as the job logs it (its time and the bytes it "
        "read from Cloud Storage). What the instance did once as it started (functions/warmup.py: the isolation "
        "probe, the egress proxy, the templates' trees), as each logged it, is below the table.",
        "",
        _table(["template", "", "first", "next", "first / next"], rows),
        "",
        f"First actions, each: {samples}.",
        "",
        *[f"- {unit} as it started: {done}" for unit, done in (firsts.get("warm_ups") or {}).items()],
        "",
    ]
