"""The events stream: its frames, keep-alives and end; the feed's order and resume; and its listener,
closed when the client goes (a real server, the emulator)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.requests import Request

from control_plane.app import create_app
from control_plane.auth import LOCAL_OWNER
from control_plane.errors import vibsdk_error
from control_plane.feed import REPLAY_RUNS, Landed, TransitionFeed
from control_plane.service import ControlPlane, Limits
from control_plane.sse import KEEPALIVE, EventStream, Message, frame, stream
from tests.e2e.conftest import wait_until
from tests.test_control_plane import AUTH, api_settings, topic  # noqa: F401 (fixtures)
from tests.test_recorder import event, new_request
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.errors import ConfigurationError, TooMany
from vibesdk_gcp.runs import RunDoc, RunStore
from vibesdk_gcp.runs.watches import Listener, ListenerSlots, Update
from vibesdk_gcp.schemas import SandboxRequest
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import Storage

# The thread each Firestore listener's stream runs in (google.api_core.bidi).
LISTENER_THREAD = "Thread-ConsumeBidirectionalStream"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_frame_has_id_event_and_data() -> None:
    message = Message("run-1:0", "transition", '{"status":"queued"}')
    assert frame(message) == b'id: run-1:0\nevent: transition\ndata: {"status":"queued"}\n\n'


def test_each_line_of_data_is_a_data_field() -> None:
    # Every line end the format knows splits data; others (\x0b) stay inside a line.
    message = Message("1", "note", "one\r\ntwo\rthree\nfour\x0bstill four")
    assert frame(message) == b"id: 1\nevent: note\ndata: one\ndata: two\ndata: three\ndata: four\x0bstill four\n\n"


def test_an_id_with_a_line_end_is_a_mistake() -> None:
    with pytest.raises(AssertionError, match="line end"):
        frame(Message("1\n2", "transition", "{}"))


class Scripted:
    """A source that gives each batch at its time (seconds after entering), then nothing; a wait cut
    short loses nothing, as the Source protocol asks."""

    def __init__(self, batches: list[tuple[float, Sequence[Message]]]) -> None:
        self._batches = batches
        self._start = 0.0
        self.entered = self.exited = False

    async def __aenter__(self) -> Scripted:
        self._start = asyncio.get_running_loop().time()
        self.entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.exited = True

    async def next(self) -> Sequence[Message]:
        if not self._batches:
            await asyncio.Event().wait()
        due, batch = self._batches[0]
        await asyncio.sleep(self._start + due - asyncio.get_running_loop().time())
        self._batches.pop(0)
        return batch


async def collect(frames: Any) -> list[bytes]:
    return [item async for item in frames]


async def streamed(source: Scripted, lifetime: float, every: float) -> list[bytes]:
    """The frames of a stream of the source, entered first (as get_events does)."""
    await source.__aenter__()
    return await collect(stream(source, lifetime, every))


def test_silence_is_filled_with_comments_and_the_stream_ends_on_time() -> None:
    first, second = Message("a", "transition", "1"), Message("b", "transition", "2")
    source = Scripted([(0, [first]), (0.25, [second])])
    frames = asyncio.run(streamed(source, lifetime=0.5, every=0.1))
    assert frames[0] == frame(first)
    assert frame(second) in frames
    # Keep-alives between the two and after the second, none past the lifetime.
    assert frames.count(KEEPALIVE) in (3, 4, 5)
    assert source.entered and source.exited


def test_a_cancelled_stream_leaves_its_source() -> None:
    source = Scripted([])

    async def cut_short() -> None:
        task = asyncio.ensure_future(streamed(source, lifetime=60, every=10))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cut_short())
    assert source.exited


def run_doc(run_id: str, created: datetime, statuses: list[str], error: str | None = None) -> RunDoc:
    transitions = [
        {"seq": seq, "status": status, "at": created + timedelta(seconds=seq)} for seq, status in enumerate(statuses)
    ]
    document = {
        "runId": run_id,
        "sessionId": "s",
        "action": "executeCommands",
        "paramsDigest": "d",
        "status": statuses[-1],
        "seq": len(statuses) - 1,
        "transitions": transitions,
        "error": error,
        "createdAt": created,
        "updatedAt": created,
    }
    return RunDoc.model_validate(document)


def ids(events: Sequence[Any]) -> list[str]:
    return [item.event_id for item in events]


def test_the_feed_sends_what_is_there_by_time_then_each_new_transition_once() -> None:
    feed = TransitionFeed(listener=None, after=None)  # type: ignore[arg-type]  # new() reads no listener
    early = run_doc("early", T0, ["queued", "running", "failed"], error="boom")
    late = run_doc("late", T0 + timedelta(seconds=1.5), ["queued"])
    sent = feed.new([late, early])
    assert ids(sent) == ["early:0", "early:1", "late:0", "early:2"]
    assert sent[-1].error == "boom" and sent[0].error is None
    again = feed.new([early, run_doc("late", T0 + timedelta(seconds=1.5), ["queued", "running"])])
    assert ids(again) == ["late:1"]


def test_the_feed_resumes_after_the_last_event_id() -> None:
    runs = [run_doc("a", T0, ["queued", "running", "succeeded"]), run_doc("b", T0 + timedelta(seconds=5), ["queued"])]
    assert ids(TransitionFeed(None, after="a:1").new(runs)) == ["a:2", "b:0"]  # type: ignore[arg-type]
    # An id the feed does not know (a run since deleted, a garbled header): everything is sent.
    assert len(TransitionFeed(None, after="nonsense").new(runs)) == 4  # type: ignore[arg-type]


def queue(store: RunStore) -> SandboxRequest:
    """A queued run of a new session of the development token's owner."""
    request = new_request().model_copy(update={"owner": LOCAL_OWNER})
    store.queue_run(request, new_session=True)
    return request


def next_event(lines: Iterator[str]) -> dict[str, str]:
    """The fields of the next event (comments skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line and fields:
            return fields
        if line and not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    raise AssertionError(f"the stream ended inside an event: {fields}")


def listener_threads() -> int:
    return sum(thread.name == LISTENER_THREAD for thread in threading.enumerate())


@pytest.fixture
def served(api_settings: Settings, store: RunStore, storage: Storage) -> Iterator[str]:  # noqa: F811
    """The API on uvicorn, in this process (so that its threads can be counted)."""
    plane = ControlPlane(store, Bus(clients.publisher_client(api_settings), api_settings.project), storage)
    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(api_settings, plane), log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start", timeout=10)
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        listening.close()


def test_the_stream_sends_transitions_and_its_listener_closes_when_the_client_goes(
    served: str,
    store: RunStore,
    topic: str,  # noqa: F811
) -> None:
    request = queue(store)
    before = listener_threads()
    client = httpx.Client(base_url=served, headers=AUTH, timeout=10)
    with client, client.stream("GET", f"/api/agent/{request.sessionId}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = next_event(lines)
        assert first["id"] == f"{request.runId}:0" and first["event"] == "transition"
        data = json.loads(first["data"])
        assert data["status"] == "queued" and data["runId"] == request.runId
        assert listener_threads() == before + 1
        store.apply(event(request, 1, "running"))
        assert next_event(lines)["id"] == f"{request.runId}:1"
    # The client went: the server's listener closes with the request, not at the stream's end.
    wait_until(lambda: listener_threads() == before, "the listener to close", timeout=10)


def test_a_bad_wait_is_refused_naming_it(served: str, store: RunStore) -> None:
    request = queue(store)
    url = f"/api/agent/{request.sessionId}/runs/{request.runId}"
    with httpx.Client(base_url=served, headers=AUTH, timeout=10) as client:
        for bad in ("-1", "61", "abc", "nan", "1_0", ""):
            answer = client.get(url, params={"wait": bad})
            assert answer.status_code == 422 and answer.json()["field"] == "wait", bad
        assert client.get(url, params={"wait": "0"}).json()["status"] == "queued"


def test_a_resume_gets_a_running_that_landed_after_its_terminal() -> None:
    # Live, the client saw a:0 then a:2 (the terminal landed first) and went; then a:1 landed.
    feed = TransitionFeed(None)  # type: ignore[arg-type]
    a = run_doc("a", T0, ["queued", "running", "succeeded"])
    without_running = a.model_copy(update={"transitions": [a.transitions[0], a.transitions[2]]})
    assert ids(feed.new([without_running])) == ["a:0", "a:2"]
    resumed = TransitionFeed(None, after="a:2").new([a], {"a": Landed(T0, T0 + timedelta(seconds=3))})  # type: ignore[arg-type]
    assert ids(resumed) == ["a:1"]


def test_a_resume_gets_a_run_that_ended_after_another_was_queued() -> None:
    # a's end is timed before b's queued but landed after it: the client's last id was b:0.
    a = run_doc("a", T0, ["queued", "running", "failed"], error="boom")
    b = run_doc("b", T0 + timedelta(seconds=3), ["queued"])
    old = run_doc("old", T0 - timedelta(minutes=5), ["queued", "running", "succeeded"])
    just_before = run_doc("just-before", T0 - timedelta(seconds=1), ["queued", "succeeded"])
    landed = {
        "just-before": Landed(T0 - timedelta(seconds=1), T0 + timedelta(seconds=2.5)),
        "a": Landed(T0, T0 + timedelta(seconds=4)),
        "b": Landed(T0 + timedelta(seconds=3), T0 + timedelta(seconds=3)),
        "old": Landed(T0 - timedelta(minutes=5), T0 - timedelta(minutes=4)),
    }
    resumed = TransitionFeed(None, after="b:0").new([old, just_before, a, b], landed)  # type: ignore[arg-type]
    # a again whole (duplicates are the client's to drop, by runId:seq), its end included; runs
    # unchanged since b's run was made (so before b:0 landed), not again.
    assert ids(resumed) == ["a:0", "a:1", "a:2"] and resumed[-1].error == "boom"


def test_a_resume_gets_what_sorted_after_the_last_event_id_in_its_batch() -> None:
    # x's terminal landed at T+0.8 stamped T+0.5; a is stamped T+0.2 and was made at T+1. The replay
    # sent x:0, x:1, a:0, x:2 (by `at`): a client gone after a:0 never saw x:2, though x has not
    # changed since a was made.
    x = run_doc("x", T0, ["queued", "running", "succeeded"])
    stamps = [T0, T0 + timedelta(seconds=0.1), T0 + timedelta(seconds=0.5)]
    timed = [item.model_copy(update={"at": at}) for item, at in zip(x.transitions, stamps, strict=True)]
    x = x.model_copy(update={"transitions": timed})
    a = run_doc("a", T0 + timedelta(seconds=0.2), ["queued"])
    landed = {
        "x": Landed(T0, T0 + timedelta(seconds=0.8)),
        "a": Landed(T0 + timedelta(seconds=1), T0 + timedelta(seconds=1)),
    }
    assert ids(TransitionFeed(None).new([x, a], landed)) == ["x:0", "x:1", "a:0", "x:2"]  # type: ignore[arg-type]
    resumed = TransitionFeed(None, after="a:0").new([x, a], landed)  # type: ignore[arg-type]
    assert ids(resumed) == ["x:2"]


class Snap:
    """A run document's snapshot; reading one not meant to be read fails the test."""

    def __init__(self, run: RunDoc, created: datetime, readable: bool = True) -> None:
        self.id, self.exists, self.create_time, self.update_time = run.runId, True, created, created
        self._run, self._readable = run, readable

    def to_dict(self) -> dict[str, Any]:
        assert self._readable, f"{self.id} was read again, unchanged"
        return self._run.model_dump()


class Updates:
    """A listener that gives the updates it is handed."""

    def __init__(self, updates: list[Update]) -> None:
        self._updates = updates

    async def take(self) -> Update:
        return self._updates.pop(0)


def test_the_feed_replays_the_latest_runs_then_reads_only_what_changed() -> None:
    runs = [run_doc(f"r{n:03}", T0 + timedelta(seconds=n), ["queued"]) for n in range(REPLAY_RUNS + 50)]
    first = [Snap(run, run.createdAt) for run in runs]
    changed = run_doc("r149", T0 + timedelta(seconds=149), ["queued", "running"])
    unread = [Snap(run, run.createdAt, readable=False) for run in runs]
    second = Update(unread, {"r149": Snap(changed, changed.createdAt)})  # type: ignore[arg-type,dict-item]
    feed = TransitionFeed(Updates([Update(first), second]))  # type: ignore[arg-type]
    replayed = asyncio.run(feed.next())
    assert [message.id for message in replayed] == [f"r{n:03}:0" for n in range(50, REPLAY_RUNS + 50)]
    assert [message.id for message in asyncio.run(feed.next())] == ["r149:1"]


def test_a_stream_leaves_its_source_at_its_deadline_even_if_the_client_stops_reading() -> None:
    source = Scripted([(0, [Message("a", "transition", "1")])])

    async def read_once() -> None:
        await source.__aenter__()
        frames = stream(source, lifetime=0.2, every=10)
        await anext(frames)  # then nothing more is read, as from a client that stopped
        await asyncio.sleep(0.4)
        assert source.exited
        await frames.aclose()

    asyncio.run(read_once())


def test_over_its_bound_an_owner_gets_429_and_each_stream_frees_its_place(
    served: str,
    store: RunStore,
    topic: str,  # noqa: F811
) -> None:
    request = queue(store)
    before = listener_threads()
    client = httpx.Client(base_url=served, headers=AUTH, timeout=10)
    url = f"/api/agent/{request.sessionId}/events"
    with client, contextlib.ExitStack() as streams:
        readers = []  # each kept: a reader dropped closes its response (httpcore)
        for _ in range(Settings.max_streams_per_owner):
            opened = streams.enter_context(client.stream("GET", url))
            assert opened.status_code == 200
            readers.append(opened.iter_lines())
            next_event(readers[-1])
        refused = client.get(url)
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_requests"
        assert int(refused.headers["Retry-After"]) > 0
        streams.close()
        wait_until(lambda: listener_threads() == before, "the listeners to close", timeout=10)
        with client.stream("GET", url) as again:
            assert again.status_code == 200


def test_a_stream_refused_a_listener_is_a_429_and_frees_the_owners_place(
    served: str,
    store: RunStore,
    monkeypatch: pytest.MonkeyPatch,
    topic: str,  # noqa: F811
) -> None:
    request = queue(store)
    full = ListenerSlots(0)
    monkeypatch.setattr(store, "session_runs", lambda session_id, newest: Listener(None, slots=full))  # type: ignore[arg-type]
    with httpx.Client(base_url=served, headers=AUTH, timeout=10) as client:
        # More than the owner's bound: each refusal gave its place back.
        for _ in range(Settings.max_streams_per_owner + 1):
            refused = client.get(f"/api/agent/{request.sessionId}/events")
            assert refused.status_code == 429 and "listeners" in refused.json()["detail"]
            assert int(refused.headers["Retry-After"]) > 0


def test_a_stream_whose_body_is_never_sent_leaves_its_source() -> None:
    source = Scripted([(0, [Message("a", "transition", "1")])])

    async def gone_before_the_body() -> None:
        await source.__aenter__()

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            await asyncio.Event().wait()  # the headers never go

        await EventStream(source, lifetime=60)({"type": "http", "asgi": {"spec_version": "2.3"}}, receive, send)

    asyncio.run(gone_before_the_body())
    assert source.exited


def test_waits_and_streams_cut_short_leave_no_listener(served: str, store: RunStore, topic: str) -> None:  # noqa: F811
    request = queue(store)
    before = listener_threads()
    with httpx.Client(base_url=served, headers=AUTH, timeout=10) as client:
        for _ in range(30):
            answer = client.get(f"/api/agent/{request.sessionId}/runs/{request.runId}", params={"wait": "0.0001"})
            assert answer.status_code == 200
        for _ in range(30):
            with client.stream("GET", f"/api/agent/{request.sessionId}/events") as response:
                assert response.status_code == 200  # and gone, right after the headers
    wait_until(lambda: listener_threads() == before, "the listeners to close", timeout=15)


def test_an_owner_holds_at_most_its_waits(store: RunStore, storage: Storage, api_settings: Settings) -> None:  # noqa: F811
    plane = ControlPlane(
        store, Bus(clients.publisher_client(api_settings), api_settings.project), storage, Limits(max_waits=1)
    )
    request = queue(store)

    async def two() -> None:
        first = asyncio.ensure_future(plane.run_when_terminal(LOCAL_OWNER, request.sessionId, request.runId, 5))
        await asyncio.sleep(0.2)
        with pytest.raises(TooMany):
            await plane.run_when_terminal(LOCAL_OWNER, request.sessionId, request.runId, 5)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (await plane.run_when_terminal(LOCAL_OWNER, request.sessionId, request.runId, 0.1)).status == "queued"

    asyncio.run(two())


def test_the_runner_is_told_too_many_as_text() -> None:
    runner = Request({"type": "http", "method": "GET", "path": "/runner/instances", "headers": []})
    answer = asyncio.run(vibsdk_error(runner, TooMany("8 waits already open for this owner", 5)))
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "5"
    assert answer.body == b"8 waits already open for this owner."


def test_the_longest_wait_is_the_settings_and_the_openapi_documents_it(
    api_settings: Settings,  # noqa: F811
    store: RunStore,
    storage: Storage,
) -> None:
    with pytest.raises(ConfigurationError, match="VIBESDK_MAX_WAIT_SECONDS"):
        Settings.from_env({"VIBESDK_MAX_WAIT_SECONDS": "601"})
    longer = dataclasses.replace(api_settings, max_wait_seconds=120.0)
    plane = ControlPlane(store, Bus(clients.publisher_client(longer), longer.project), storage)
    document = create_app(longer, plane).state.openapi
    parameters = document["paths"]["/api/agent/{sessionId}/runs/{runId}"]["get"]["parameters"]
    assert next(item for item in parameters if item["name"] == "wait")["schema"]["maximum"] == 120.0
