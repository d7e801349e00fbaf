"""Waiting for a run (polling, or waiting on the server) and watching it on the events stream."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from vibesdk_cli.client import parse_events
from vibesdk_cli.progress import WAIT_SECONDS, until_ended, wait_for_run, watch


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


class Server:
    """A Client's run and events, scripted: each run answer in turn, and each stream's events."""

    def __init__(self, runs: list[dict[str, Any]], streams: list[list[dict[str, Any] | None]] | None = None) -> None:
        self._runs = runs
        self._streams = streams or []
        self.waits: list[float] = []
        self.resumed: list[str | None] = []

    def run(self, session: str, run: str, wait: float = 0) -> dict[str, Any]:
        self.waits.append(wait)
        return self._runs.pop(0)

    def events(self, session: str, last_event_id: str | None = None) -> Iterator[dict[str, Any] | None]:
        self.resumed.append(last_event_id)
        yield from self._streams.pop(0)


def test_until_ended_waits_on_the_server_rather_than_polling() -> None:
    server = Server([{"status": "running"}, {"status": "succeeded"}])
    run = until_ended(server, "s", "r", timeout=100)  # type: ignore[arg-type]
    assert run == {"status": "succeeded"}
    assert server.waits == [WAIT_SECONDS, WAIT_SECONDS]


def test_until_ended_past_its_timeout_answers_the_run_as_it_stands() -> None:
    server = Server([{"status": "running"}])
    assert until_ended(server, "s", "r", timeout=0) == {"status": "running"}  # type: ignore[arg-type]
    assert server.waits == [0]


def transition(run_id: str, seq: int, status: str, second: int) -> dict[str, Any]:
    data = {"runId": run_id, "seq": seq, "status": status, "at": f"2026-12-01T12:00:{second:02d}+00:00"}
    return {"id": f"{run_id}:{seq}", "event": "transition", "data": data}


def test_watch_shows_each_transition_of_its_run_and_resumes_a_stream_that_ended() -> None:
    first_stream: list[dict[str, Any] | None] = [
        transition("other", 0, "queued", 0),
        transition("r", 0, "queued", 1),
        None,
    ]
    second_stream: list[dict[str, Any] | None] = [transition("r", 1, "running", 2), transition("r", 2, "succeeded", 4)]
    ended = {"status": "succeeded", "transitions": []}
    server = Server([{"status": "queued"}, ended], [first_stream, second_stream])
    out = io.StringIO()
    assert watch(server, "s", "r", out=out) is ended  # type: ignore[arg-type]
    assert out.getvalue().split("\n") == ["  +  0.00 s  queued", "  +  1.00 s  running", "  +  3.00 s  succeeded", ""]
    assert server.resumed == [None, "r:0"]


def test_events_are_parsed_from_the_stream_lines() -> None:
    lines = [
        "id: r:0",
        "event: transition",
        'data: {"a":',
        "data: 1}",
        "",
        ": keep-alive",
        "",
        "id: r:1",
        "data: 2",
        "",
    ]
    assert list(parse_events(iter(lines))) == [
        {"id": "r:0", "event": "transition", "data": {"a": 1}},
        None,
        {"id": "r:1", "data": 2},
    ]
