"""The sandbox job in process: real actions against the emulators, status events on Pub/Sub."""

from __future__ import annotations

import base64
import errno
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from devstack.templates import upload_templates
from functions import job, sandbox
from functions.actions import commands
from functions.actions.common import Outcome
from functions.context import Context
from functions.deadletters import PUBSUB_SOURCE, DeadLetterBox, _source_topic, masked
from functions.job import handle_request
from functions.warmup import warm_up
from vibesdk_gcp import clients
from vibesdk_gcp.envelope import PubsubMessage, from_push_body
from vibesdk_gcp.errors import Busy
from vibesdk_gcp.names import (
    DEAD_LETTER_SUBSCRIPTION,
    DEAD_LETTER_TOPIC,
    REQUESTS_TOPIC,
    SANDBOX_JOB_SUBSCRIPTION,
    STATUS_RECORDER_SUBSCRIPTION,
    STATUS_TOPIC,
)
from vibesdk_gcp.params import NoParams
from vibesdk_gcp.registry import ACTIONS, ActionSpec
from vibesdk_gcp.runs import ClaimOutcome, RunStore
from vibesdk_gcp.schemas import SandboxRequest, StatusEvent, utcnow
from vibesdk_gcp.settings import Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@pytest.fixture
def status_events(context: Context) -> Iterator[Any]:
    """The status topic with a pull subscription, to read what the job published."""
    publisher = clients.publisher_client(context.settings)
    subscriber = clients.subscriber_client(context.settings)
    topic = publisher.topic_path(context.settings.project, STATUS_TOPIC)
    publisher.create_topic(name=topic)
    subscription = subscriber.subscription_path(context.settings.project, "test-status")
    subscriber.create_subscription(name=subscription, topic=topic)
    dead_letters = publisher.topic_path(context.settings.project, DEAD_LETTER_TOPIC)
    publisher.create_topic(name=dead_letters)
    subscriber.create_subscription(
        name=subscriber.subscription_path(context.settings.project, DEAD_LETTER_SUBSCRIPTION), topic=dead_letters
    )

    def terminal() -> dict[str, Any]:
        """The next terminal event; a running event before it is checked and skipped."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=1, timeout=10)
            for received in response.received_messages:
                subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])
                event = json.loads(received.message.data)
                if event["status"] in ("succeeded", "failed"):
                    assert event["startedAt"], event
                    return dict(event)
                assert (event["status"], event["seq"]) == ("running", 1)
        raise AssertionError("no terminal status event within 30 s")

    yield terminal
    subscriber.close()


def message_for(request: SandboxRequest, params: dict[str, Any] | None = None) -> PubsubMessage:
    # As any publisher may write it: JSON escapes can carry what UTF-8 cannot (lone surrogates).
    body = request.model_dump(mode="json") | ({"params": params} if params is not None else {})
    data = base64.b64encode(json.dumps(body, ensure_ascii=True).encode()).decode()
    return from_push_body(
        {
            "message": {"messageId": str(uuid.uuid4()), "data": data, "attributes": request.attributes()},
            "deliveryAttempt": 1,
        }
    )


def run(
    context: Context,
    session_id: str,
    action: str,
    params: dict[str, Any] | None = None,
    new: bool = False,
    egress: bool = True,
) -> SandboxRequest:
    fields: dict[str, Any] = {
        "sessionId": session_id,
        "runId": str(uuid.uuid4()),
        "action": action,
        "templateName": "static-site",
        "issuedAt": utcnow(),
        "owner": "alice",
        "egress": egress,
    }
    try:
        request, sent = SandboxRequest(**fields, params=params or {}), None
    except ValidationError:
        # Params the control plane refuses, as another publisher may still send them: the job must
        # refuse them itself. The run is queued as the control plane would have queued it.
        request, sent = SandboxRequest.model_construct(**fields, params=NoParams()), params
    context.store.queue_run(request, new_session=new)
    handle_request(message_for(request, sent), context)
    return request


@pytest.fixture
def session(context: Context, status_events: Any) -> str:
    upload_templates(context.storage)
    session_id = str(uuid.uuid4())
    run(context, session_id, "createInstance", new=True)
    created = status_events()
    assert created["status"] == "succeeded", created
    assert created["result"]["instanceId"] == session_id
    return session_id


def test_create_then_execute(context: Context, session: str, status_events: Any) -> None:
    run(context, session, "executeCommands", {"commands": ["npm run build --silent", "cat dist/index.html"]})
    event = status_events()
    assert event["status"] == "succeeded", event
    results = event["result"]["results"]
    assert [r["exitCode"] for r in results] == [0, 0]
    assert "Hello from VibSDK" in results[1]["output"]


def test_failing_command_fails_the_run(context: Context, session: str, status_events: Any) -> None:
    run(context, session, "executeCommands", {"commands": ["echo broken >&2; exit 4", "echo never"]})
    failed = status_events()
    assert failed["status"] == "failed"
    assert "exited with code 4" in failed["error"] and "broken" in failed["error"]
    assert len(failed["result"]["results"]) == 1


def test_files_survive_between_actions(context: Context, session: str, status_events: Any) -> None:
    run(context, session, "writeFiles", {"files": [{"filePath": "src/new.txt", "fileContents": "fresh"}]})
    assert status_events()["status"] == "succeeded"
    # A different job instance: no local copy at all.
    elsewhere = replace(context.settings, workspace_root=context.settings.workspace_root / "elsewhere")
    other = replace(context, settings=elsewhere)
    run(other, session, "getFiles", {"filePaths": ["src/new.txt"]})
    result = status_events()["result"]
    assert result["files"] == [{"filePath": "src/new.txt", "fileContents": "fresh"}]


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", "src/../../x"])
def test_paths_outside_workspace_are_refused(context: Context, session: str, status_events: Any, path: str) -> None:
    run(context, session, "writeFiles", {"files": [{"filePath": path, "fileContents": "x"}]})
    failed = status_events()
    assert failed["status"] == "failed" and "outside the workspace" in failed["error"]


def test_link_leaving_workspace_is_refused(context: Context, session: str, status_events: Any) -> None:
    run(context, session, "executeCommands", {"commands": ["ln -s /etc escape"]})
    status_events()
    run(context, session, "getFiles", {"filePaths": ["escape/hostname"]})
    failed = status_events()
    assert failed["status"] == "failed" and "through a link" in failed["error"]


def test_listing_shows_links_as_links_and_follows_none(context: Context, session: str, status_events: Any) -> None:
    # npm projects carry such links in node_modules/.bin; one leaving the workspace too.
    run(
        context,
        session,
        "executeCommands",
        {"commands": ["mkdir -p bin && ln -s ../src/index.html bin/page && ln -s /etc escape"]},
    )
    assert status_events()["status"] == "succeeded"
    run(context, session, "getFiles", {})
    listed = status_events()
    assert listed["status"] == "succeeded", listed
    result = listed["result"]
    assert {"filePath": "bin/page", "linkTarget": "../src/index.html"} in result["links"]
    assert {"filePath": "escape", "linkTarget": "/etc"} in result["links"]
    paths = [item["filePath"] for item in result["files"]]
    assert "src/index.html" in paths and not any(p.startswith(("escape", "bin/")) for p in paths)


def test_action_without_instance_fails_clearly(context: Context, status_events: Any) -> None:
    session_id = str(uuid.uuid4())
    run(context, session_id, "executeCommands", {"commands": ["true"]}, new=True)
    failed = status_events()
    assert failed["status"] == "failed" and "run createInstance first" in failed["error"]


def test_unknown_template_fails_clearly(context: Context, status_events: Any) -> None:
    request = SandboxRequest(
        sessionId=str(uuid.uuid4()),
        runId=str(uuid.uuid4()),
        action="createInstance",
        templateName="nope",
        issuedAt=utcnow(),
        owner="alice",
    )
    context.store.queue_run(request, new_session=True)
    handle_request(message_for(request), context)
    failed = status_events()
    assert "template 'nope' does not exist" in failed["error"]


def test_unsupported_action(context: Context, session: str, status_events: Any) -> None:
    run(context, session, "pushToGitHub")
    failed = status_events()
    assert failed["error"] == "pushToGitHub is unsupported on this runtime"


def test_duplicate_delivery_of_finished_run_does_nothing(context: Context, session: str, status_events: Any) -> None:
    request = run(context, session, "executeCommands", {"commands": ["echo once >> count.txt"]})
    context.store.apply(StatusEvent.model_validate(status_events()))
    handle_request(message_for(request), context)
    run(context, session, "getFiles", {"filePaths": ["count.txt"]})
    result = status_events()["result"]
    assert result["files"][0]["fileContents"] == "once\n"


def test_request_with_unknown_action_fails_its_run(context: Context, status_events: Any) -> None:
    data = base64.b64encode(b'{"action": "launchRocket"}').decode()
    attributes = {"sessionId": "s", "runId": "r", "schemaVersion": "1"}
    handle_request(from_push_body({"message": {"messageId": "m", "data": data, "attributes": attributes}}), context)
    failed = status_events()
    assert (failed["runId"], failed["status"]) == ("r", "failed")
    assert "not a valid SandboxRequest" in failed["error"]


def test_unidentifiable_request_is_dead_lettered(context: Context, status_events: Any) -> None:
    data = base64.b64encode(b"garbage").decode()
    handle_request(from_push_body({"message": {"messageId": "m-1", "data": data}}), context)
    letters = DeadLetterBox(context.settings).peek()
    assert [(letter.original_id, letter.source, letter.data) for letter in letters] == [
        ("m-1", "vibesdk-sandbox-requests", b"garbage")
    ]
    assert "not JSON" in letters[0].reason


def test_error_parsing_ignores_huge_lines() -> None:
    from functions.diagnostics import command_errors

    # A 200 kB line once made the patterns backtrack for minutes; it is now skipped.
    found = command_errors("x:" * 100_000 + "\nTypeError: bad thing\n", "cmd")
    assert [(e["source"], e["filePath"], e["line"], e["message"], e["level"]) for e in found] == [
        ("cmd", None, None, "TypeError: bad thing", 50)
    ]


def test_slow_action_publishes_running_first(context: Context, session: str, monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[tuple[str, int, str]] = []  # (runId, seq, status), in the order the job published them
    publish = context.bus.publish_status

    def observed_publish(event: StatusEvent) -> str:
        published.append((event.runId, event.seq, event.status))
        return publish(event)

    real_run = commands.run_in_sandbox

    def slow_command(*args: Any, **kwargs: Any) -> Any:
        outcome = real_run(*args, **kwargs)
        # The action is still going (its workspace is not even saved): running must be out by now,
        # or come out while we wait, however loaded the machine. Waiting on it, not on a sleep's length.
        deadline = time.monotonic() + 30
        while not any(status == "running" for _, _, status in published):
            assert time.monotonic() < deadline, f"no running event while the action went on 30 s: {published}"
            time.sleep(0.01)
        published.append(("", 0, "command ended"))
        return outcome

    monkeypatch.setattr(context.bus, "publish_status", observed_publish)
    monkeypatch.setattr(commands, "run_in_sandbox", slow_command)
    request = run(context, session, "executeCommands", {"commands": ["sleep 1"]})
    assert published == [
        (request.runId, 1, "running"),
        ("", 0, "command ended"),
        (request.runId, 2, "succeeded"),
    ]
    # And Pub/Sub took them in that order: running's publish time comes before the terminal event's.
    subscriber = clients.subscriber_client(context.settings)
    subscription = subscriber.subscription_path(context.settings.project, "test-status")
    received: dict[int, Any] = {}
    deadline = time.monotonic() + 30
    while len(received) < 2 and time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=10, timeout=10)
        for message in response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[message.ack_id])
            event = json.loads(message.message.data)
            if event["runId"] == request.runId:
                received[event["seq"]] = (event["status"], message.message.publish_time)
    subscriber.close()
    assert sorted(received) == [1, 2], f"this run's events were not both received within 30 s: {received}"
    (running, running_at), (terminal, terminal_at) = received[1], received[2]
    assert (running, terminal) == ("running", "succeeded")
    assert running_at < terminal_at


@pytest.mark.parametrize(
    ("subscription", "topic"),
    [
        # What the local stack names the trigger's subscription, and what Eventarc names it on Google Cloud.
        (f"projects/p/subscriptions/{SANDBOX_JOB_SUBSCRIPTION}", REQUESTS_TOPIC),
        ("projects/p/subscriptions/eventarc-europe-west1-vibesdk-sandbox-job-123-sub-456", REQUESTS_TOPIC),
        (f"projects/p/subscriptions/{STATUS_RECORDER_SUBSCRIPTION}", STATUS_TOPIC),
        ("projects/p/subscriptions/someone-elses", ""),
    ],
)
def test_dead_letters_name_their_source_topic(subscription: str, topic: str) -> None:
    assert _source_topic({PUBSUB_SOURCE: subscription}) == topic


def test_a_name_that_is_not_utf8_is_reported_not_fatal(context: Context, session: str, status_events: Any) -> None:
    run(context, session, "executeCommands", {"commands": ["printf x > \"$(printf 'bad\\377name')\""]})
    assert status_events()["status"] == "succeeded"
    run(context, session, "getFiles", {})
    listed = status_events()
    assert listed["status"] == "succeeded", listed
    assert listed["result"]["unreadableNames"] == ["bad\\xffname"]


def test_an_unsaved_link_swap_cannot_make_the_next_restore_write_outside(
    context: Context, session: str, status_events: Any, tmp_path: Path
) -> None:
    """runStaticAnalysisCode runs the user-editable lint script and saves nothing: the red team's trigger."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "index.html").write_text("root's own file")
    package = json.loads((TEMPLATES / "static-site" / "package.json").read_text())
    package["scripts"]["lint"] = f"rm -rf src && ln -s {outside} src"
    run(context, session, "writeFiles", {"files": [{"filePath": "package.json", "fileContents": json.dumps(package)}]})
    assert status_events()["status"] == "succeeded"
    run(context, session, "runStaticAnalysisCode")
    status_events()
    run(context, session, "getFiles", {"filePaths": ["src/index.html"]})  # the next action restores
    restored = status_events()
    assert restored["status"] == "succeeded", restored
    assert "Hello from VibSDK" in restored["result"]["files"][0]["fileContents"]
    assert [p.name for p in outside.iterdir()] == ["index.html"]
    assert (outside / "index.html").read_text() == "root's own file"


def test_an_action_never_outlives_its_delivery(
    context: Context, session: str, status_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command asked 3600 s, but a delivery is cut at 600 s: the action keeps within its own budget."""
    short = replace(context, settings=replace(context.settings, max_action_seconds=2))
    given: list[float] = []  # the time each command was given to run
    real_run = commands.run_in_sandbox

    def observed_run(ctx: Context, command: str, workspace: Path, env: Any, timeout: float, *rest: Any) -> Any:
        given.append(timeout)
        return real_run(ctx, command, workspace, env, timeout, *rest)

    monkeypatch.setattr(commands, "run_in_sandbox", observed_run)
    request = run(short, session, "executeCommands", {"commands": ["sleep 30", "echo never"], "timeout": 3600})
    failed = status_events()
    assert failed["runId"] == request.runId
    # The command got what was left of the action's 2 s, not the 3600 s it asked for, and was cut there.
    assert len(given) == 1 and 0 < given[0] <= 2, given
    assert failed["status"] == "failed" and "timed out" in failed["error"]
    (result,) = failed["result"]["results"]
    assert result["command"] == "sleep 30" and not result["success"] and "[killed: timeout]" in result["error"]


def test_a_secret_a_failing_command_prints_is_redacted(context: Context, status_events: Any) -> None:
    upload_templates(context.storage)
    session_id, secret = str(uuid.uuid4()), f"sk-{uuid.uuid4().hex}"
    run(context, session_id, "createInstance", {"envVars": {"API_KEY": secret}}, new=True)
    assert status_events()["status"] == "succeeded"
    run(context, session_id, "executeCommands", {"commands": ['echo "key=$API_KEY"; echo "$API_KEY" >&2; exit 1']})
    failed = status_events()
    assert failed["status"] == "failed"
    text = json.dumps(failed)
    assert secret not in text and "key=[REDACTED]" in text
    stored = [
        context.storage.read("vibesdk-logs", info.name)
        for info in context.storage.list("vibesdk-logs", f"{session_id}/")
    ]
    assert stored and not any(secret.encode() in data for data in stored)


def test_dead_letter_listing_masks_env_vars() -> None:
    letter = json.dumps({"action": "createInstance", "params": {"envVars": {"TOKEN": "hunter2-secret"}}}).encode()
    shown = masked(letter)
    assert b"hunter2-secret" not in shown and json.loads(shown)["params"]["envVars"] == {"TOKEN": "***"}
    assert masked(b"\xff not json") == b"\xff not json"


# Text as callers can send it: any code point, lone surrogates and NUL included.
ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=300)
PATHS = st.one_of(
    ANY_TEXT,
    st.builds(lambda n: "a" * n, st.integers(250, 300)),
    st.sampled_from(["src", "src/index.html/x", "..", "/etc/x", "a/../../b"]),
)
ODD_REQUESTS = st.one_of(
    st.builds(lambda c: ("executeCommands", {"commands": c, "timeout": 5}), st.lists(ANY_TEXT, min_size=1, max_size=2)),
    st.builds(lambda p, t: ("writeFiles", {"files": [{"filePath": p, "fileContents": t}]}), PATHS, ANY_TEXT),
    st.builds(lambda p: ("getFiles", {"filePaths": p}), st.lists(PATHS, max_size=2)),
    st.builds(
        lambda e: ("createInstance", {"templateName": "static-site", "envVars": e}),
        st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=2),
    ),
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=ODD_REQUESTS)
def test_no_input_crashes_the_job(
    context: Context, session: str, status_events: Any, case: tuple[str, dict[str, Any]]
) -> None:
    """Whatever the parameters, a run ends succeeded or failed with a message: no 5xx, no retry, no stuck session."""
    action, params = case
    request = run(context, session, action, params)  # an exception here would be a 500 and a redelivery
    event = status_events()  # this run's terminal event (the helper returns succeeded or failed only)
    assert (event["runId"], event["seq"]) == (request.runId, 2), event
    if event["status"] == "failed":  # with a message saying why, and not an unexpected error's
        assert (event["error"] or "").strip(), event
        assert "internal error" not in event["error"], event["error"]
    else:
        assert event["error"] is None and event["result"] is not None, event


def test_a_job_out_of_a_resource_gives_the_run_back_for_a_retry(
    context: Context, session: str, status_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Running out of descriptors (another owner's flood, say) is no fault of the run: a negative
    acknowledgement, never "internal error ... not retried"."""
    real = sandbox.run_command
    shortages = [OSError(errno.EMFILE, "Too many open files")]

    def short_once(*args: Any, **kwargs: Any) -> Any:
        if shortages:
            raise shortages.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(sandbox, "run_command", short_once)
    request = SandboxRequest(
        sessionId=session,
        runId=str(uuid.uuid4()),
        action="executeCommands",
        params={"commands": ["echo done"]},
        issuedAt=utcnow(),
        owner="alice",
    )
    context.store.queue_run(request, new_session=False)
    message = message_for(request)
    with pytest.raises(Busy, match=r"out of a resource \(Too many open files\); retried"):
        handle_request(message, context)
    assert context.store.get_run(session, request.runId).status == "queued"
    handle_request(message, context)  # the redelivery
    event = status_events()
    assert (event["runId"], event["status"]) == (request.runId, "succeeded"), event
    assert event["result"]["results"][0]["output"] == "done\n"


def test_a_create_instance_whose_result_is_spilled_still_makes_the_instance_ready(
    context: Context, status_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's changes travel in their own field: a result too big to keep inline takes none along."""
    upload_templates(context.storage)
    monkeypatch.setattr(job, "MAX_INLINE_RESULT_BYTES", 64)  # any template's file tree is over it
    session_id = str(uuid.uuid4())
    run(context, session_id, "createInstance", new=True)
    created = status_events()
    assert created["status"] == "succeeded", created
    assert created["result"]["resultObject"].endswith(f"/{session_id}/results/{created['runId']}.json"), created
    assert created["session"] == {"instanceId": session_id}
    context.store.apply(StatusEvent.model_validate(created))
    assert context.store.get_session(session_id).instanceId == session_id

    run(context, session_id, "deployInstance")
    deployed = status_events()
    assert deployed["status"] == "succeeded", deployed
    assert set(deployed["session"]) == {"preview"}  # the instance is left as it is, not cleared
    context.store.apply(StatusEvent.model_validate(deployed))
    recorded = context.store.get_session(session_id)
    assert "resultObject" in deployed["result"] and recorded.instanceId == session_id
    assert recorded.preview and recorded.preview.previewUrl == deployed["session"]["preview"]["previewUrl"]


# Values for the params an action requires, by field name: enough for the action to reach its instance.
REQUIRED_EXAMPLES: dict[str, Any] = {
    "commands": ["true"],
    "files": [{"filePath": "a.txt", "fileContents": ""}],
    "errors": [{"kind": "error", "message": "x"}],
}


@pytest.mark.parametrize("spec", ACTIONS.values(), ids=list(ACTIONS))
def test_the_registry_says_truly_which_actions_need_an_instance(
    context: Context, status_events: Any, spec: ActionSpec
) -> None:
    upload_templates(context.storage)
    required = spec.params.model_json_schema().get("required", [])
    params = {name: REQUIRED_EXAMPLES[name] for name in required}
    run(context, str(uuid.uuid4()), spec.name, params, new=True)
    event = status_events()
    refused = event["status"] == "failed" and "has no instance" in (event["error"] or "")
    assert refused == spec.instance, event


def test_the_job_refuses_network_to_a_request_whose_key_has_no_egress(
    context: Context, session: str, status_events: Any
) -> None:
    """The control plane refuses it; a message from elsewhere is refused by the job too, before any work."""
    run(context, session, "executeCommands", {"commands": ["true"], "allowNetwork": True}, egress=False)
    event = status_events()
    assert event["status"] == "failed" and "no egress" in event["error"], event


def test_session_changes_are_also_in_an_inline_result_as_the_previous_release_reads_them(
    context: Context, status_events: Any
) -> None:
    upload_templates(context.storage)
    session_id = str(uuid.uuid4())
    run(context, session_id, "createInstance", new=True)
    created = status_events()
    assert created["session"] == created["result"]["session"] == {"instanceId": session_id}, created


def _queued(
    context: Context,
    session_id: str,
    action: str,
    params: dict[str, Any],
    owner: str = "alice",
    new: bool = False,
) -> SandboxRequest:
    request = SandboxRequest(
        sessionId=session_id,
        runId=str(uuid.uuid4()),
        action=action,
        templateName="static-site",
        issuedAt=utcnow(),
        owner=owner,
        egress=True,
        params=params,
    )
    context.store.queue_run(request, new_session=new)
    return request


def _new_session_run(context: Context, owner: str) -> SandboxRequest:
    """A quick command of `owner`'s, queued in a session of its own."""
    return _queued(context, str(uuid.uuid4()), "executeCommands", {"commands": ["true"]}, owner, new=True)


def test_the_instance_that_ends_a_run_starts_the_sessions_next_one(
    context: Context, session: str, status_events: Any, settings: Settings, sandbox_root: Path
) -> None:
    """Two instances (two contexts on the same emulators): the later action's delivery reaches the
    other one while the earlier runs, and is refused (Pub/Sub would bring it back after its
    backoff); the instance that ends the earlier one starts it at once, from Firestore's copy."""
    other_root = Path(tempfile.mkdtemp(dir=sandbox_root))
    other = Context(replace(settings, workspace_root=other_root), context.store, context.bus, context.storage)
    first = _queued(context, session, "executeCommands", {"commands": ["sleep 3"]})
    second = _queued(context, session, "executeCommands", {"commands": ["echo second"]})
    worker = threading.Thread(target=handle_request, args=(message_for(first), context))
    worker.start()
    deadline = time.monotonic() + 30
    while not any(run.claimed for run in context.store.unfinished_in_session(session) if run.runId == first.runId):
        assert time.monotonic() < deadline, "the first run was never claimed"
        time.sleep(0.05)
    with pytest.raises(Busy, match="waits for run"):
        handle_request(message_for(second), other)  # the delivery that reached the other instance
    worker.join(timeout=60)
    ended = {event["runId"]: event for event in (status_events(), status_events())}
    assert [ended[run.runId]["status"] for run in (first, second)] == ["succeeded", "succeeded"], ended
    assert ended[second.runId]["result"]["results"][0]["output"] == "second\n"
    gap = datetime.fromisoformat(ended[second.runId]["startedAt"]) - datetime.fromisoformat(ended[first.runId]["time"])
    assert gap.total_seconds() < 1.0, gap  # not Pub/Sub's backoff (10 s at least)
    handle_request(message_for(second), other)  # its redelivery finds it done: acknowledged, not run again
    assert context.store.get_run(session, second.runId).claims == 1


def test_one_owners_flood_holds_at_most_half_of_all_instances_workers(
    context: Context, status_events: Any, settings: Settings, sandbox_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances of two workers each: one owner's share is two actions over both, not two on
    each; the refused ones are started, without a redelivery, by the instances whose runs gave
    the share back. The action itself is a counted wait: what is under test is who may start one."""
    two_of_two = replace(settings, threads=2, job_instances=2, max_actions_per_owner=0)
    instances = [
        Context(replace(two_of_two, workspace_root=Path(tempfile.mkdtemp(dir=sandbox_root))), *stores)
        for stores in [(context.store, context.bus, context.storage)] * 2
    ]
    assert [instance.slots.share for instance in instances] == [2, 2]
    running, most, lock = 0, 0, threading.Lock()  # the flood's actions at work
    spans: dict[str, tuple[float, float]] = {}

    def counted_wait(request: SandboxRequest, ctx: Context) -> Any:
        nonlocal running, most
        began, flooding = time.monotonic(), request.owner == "flood"
        with lock:
            running += flooding
            most = max(most, running)
        time.sleep(1.5)
        with lock:
            running -= flooding
        spans[request.runId] = (began, time.monotonic())
        return Outcome({"waited": True})

    monkeypatch.setattr(job, "perform", counted_wait)
    flood = [_new_session_run(context, "flood") for _ in range(6)]
    refused: list[str] = []

    def deliver(request: SandboxRequest, instance: Context) -> None:
        try:
            handle_request(message_for(request), instance)
        except Busy as busy:
            refused.append(str(busy))

    workers = [
        threading.Thread(target=deliver, args=(request, instances[index % 2])) for index, request in enumerate(flood)
    ]
    for worker in workers:
        worker.start()
    time.sleep(0.5)  # the flood's two are at work
    other = _new_session_run(context, "bob")
    deliver(other, instances[0])  # another owner's action is not held behind the flood
    flood_ends = [end for run_id, (_, end) in spans.items() if run_id != other.runId]
    assert spans[other.runId][0] < min(flood_ends), spans  # it ran while the flood held its share
    for worker in workers:
        worker.join(timeout=30)
    assert len(refused) == 4, refused  # each delivery of the four: a negative ack
    # However the six landed (three on each), at least two were refused by the count over both.
    assert sum("over the job's instances" in reason for reason in refused) >= 2, refused
    assert most == 2, most  # the flood's share, over both instances
    # Every refused run started as a share came back, not after Pub/Sub's backoff (10 s at least).
    for request in flood:
        run = context.store.get_run(request.sessionId, request.runId)
        assert run.claims == 1 and run.claim and run.claim.endedAt, run  # ended by its one holder
    starts = sorted(spans[request.runId][0] for request in flood)
    ends = [spans[request.runId][1] for request in flood]
    for began in starts[2:]:
        assert began - max(end for end in ends if end <= began) < 1.0, (starts, ends)
    assert not context.store.waiting_for_share("flood")
    deliver(flood[-1], instances[1])  # a redelivery finds its run done: acknowledged, not refused
    assert len(refused) == 4, refused


def test_a_run_refused_for_its_share_waits_in_issued_order_until_it_is_claimed(context: Context) -> None:
    first, second, third = (_new_session_run(context, "dave") for _ in range(3))

    def claim(request: SandboxRequest) -> ClaimOutcome:
        return context.store.claim(
            request.sessionId,
            request.runId,
            f"m-{request.runId}",
            1,
            30,
            owner="dave",
            owner_share=1,
            issued_at=request.issuedAt,
        )

    assert claim(first) is ClaimOutcome.CLAIMED
    assert [claim(third), claim(second), claim(third)] == [ClaimOutcome.OWNER_BUSY] * 3
    # Written down once each, the earliest issued first, whatever order the refusals came in.
    assert context.store.waiting_for_share("dave") == [(r.sessionId, r.runId) for r in (second, third)]
    context.store.end_claim(first.sessionId, first.runId, "dave")
    assert claim(third) is ClaimOutcome.CLAIMED  # claimed: it waits no more
    assert context.store.waiting_for_share("dave") == [(second.sessionId, second.runId)]
    context.store.stop_waiting("dave", second.runId)
    assert context.store.waiting_for_share("dave") == []


def test_an_owners_share_held_by_a_dead_instance_comes_back_when_its_lease_lapses(context: Context) -> None:
    first, second, third = (_new_session_run(context, "carol") for _ in range(3))

    def claim(request: SandboxRequest, lease: float) -> ClaimOutcome:
        return context.store.claim(
            request.sessionId, request.runId, f"m-{request.runId}", 1, lease, owner="carol", owner_share=1
        )

    assert claim(first, 0.5) is ClaimOutcome.CLAIMED  # its instance dies: nobody renews or ends it
    assert claim(second, 30) is ClaimOutcome.OWNER_BUSY
    time.sleep(0.6)
    assert claim(second, 30) is ClaimOutcome.CLAIMED
    assert claim(third, 30) is ClaimOutcome.OWNER_BUSY
    context.store.end_claim(second.sessionId, second.runId, "carol")
    assert claim(third, 30) is ClaimOutcome.CLAIMED


def test_a_new_instance_holds_its_templates_trees_before_its_first_action(
    context: Context,
    status_events: Any,
    settings: Settings,
    sandbox_root: Path,  # noqa: F811
) -> None:
    upload_templates(context.storage)
    before = Context(replace(settings, workspace_root=Path(tempfile.mkdtemp(dir=sandbox_root))), *_stores(context))
    assert warm_up(before)["tree of static-site"].startswith("not in Cloud Storage yet")
    session_id = str(uuid.uuid4())
    run(context, session_id, "createInstance", new=True)  # its install puts the tree in Cloud Storage
    assert status_events()["status"] == "succeeded"
    warmed = replace(
        settings, workspace_root=Path(tempfile.mkdtemp(dir=sandbox_root)), warm_templates=("static-site", "none-such")
    )
    new = Context(warmed, *_stores(context))
    done = warm_up(new)
    assert done["tree of static-site"].startswith("from storage"), done
    assert done["tree of none-such"].startswith("no such template"), done
    assert done["isolation"].endswith("(bubblewrap)"), done
    trees = new.disk.trees()
    assert len(trees) == 1 and trees[0].complete.exists(), trees
    # The session's first action on the new instance finds the tree there.
    request = run(new, session_id, "executeCommands", {"commands": ["ls node_modules/.bin/html-validate"]})
    ended = status_events()
    assert ended["status"] == "succeeded", ended
    assert ended["runId"] == request.runId


def _stores(context: Context) -> tuple[Any, Any, Any]:
    return context.store, context.bus, context.storage


def test_two_instances_claiming_for_one_owner_at_once_never_exceed_its_share(
    context: Context, settings: Settings
) -> None:
    """Each instance groups its claims into one read and one batch; the two race on the owner's
    document, and its update-time condition lets only one of two racing batches through."""
    instances = [context.store, RunStore(clients.firestore_client(settings))]
    runs = [_new_session_run(context, "dave") for _ in range(40)]

    def claim(index: int) -> ClaimOutcome:
        request = runs[index]
        store = instances[index % 2]
        return store.claim(request.sessionId, request.runId, f"m-{index}", 1, 30, owner="dave", owner_share=5)

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(claim, range(len(runs))))
    assert outcomes.count(ClaimOutcome.CLAIMED) == 5, outcomes
    assert outcomes.count(ClaimOutcome.OWNER_BUSY) == 35, outcomes


def test_an_instance_new_to_a_session_reads_its_installed_tree_by_name(
    context: Context, session: str, status_events: Any, settings: Settings, sandbox_root: Path
) -> None:
    """The session was created (and its tree installed) on one instance; getFiles on another
    shows the tree as a command there would see it, from the cache, installing nothing."""
    other = Context(
        replace(settings, workspace_root=Path(tempfile.mkdtemp(dir=sandbox_root))),
        context.store,
        context.bus,
        context.storage,
    )
    wanted = "node_modules/html-validate/package.json"
    run(other, session, "getFiles", {"filePaths": [wanted]})
    read = status_events()
    assert read["status"] == "succeeded", read
    (found,) = read["result"]["files"]
    assert found["filePath"] == wanted and '"name": "html-validate"' in found["fileContents"], found
    run(other, session, "getFiles", {})
    listed = status_events()["result"]["files"]
    assert not [f for f in listed if f["filePath"].startswith("node_modules/")]  # listed by name only
