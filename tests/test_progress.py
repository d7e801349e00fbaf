"""wait_for_run: the run once it has ended, or as it was when the wait gave up."""

from __future__ import annotations

from typing import Any

from vibesdk_cli.progress import wait_for_run


def test_waits_until_the_run_ends() -> None:
    statuses = iter(["queued", "running", "running", "succeeded", "unreachable"])
    seen: list[str] = []
    run = wait_for_run(lambda: {"status": next(statuses)}, timeout=10, every=0, seen=lambda r: seen.append(r["status"]))
    assert run == {"status": "succeeded"}
    assert seen == ["queued", "running", "running", "succeeded"]


def test_gives_up_after_the_timeout_with_the_last_run() -> None:
    fetched: list[dict[str, Any]] = []

    def fetch() -> dict[str, Any]:
        fetched.append({"status": "running", "n": len(fetched)})
        return fetched[-1]

    run = wait_for_run(fetch, timeout=0.05, every=0.01)
    assert run["status"] == "running" and run is fetched[-1] and len(fetched) >= 2
