"""Fault and load scenarios against the real emulators and processes; each returns a Row.

`make test` runs them small (tests/reliability/test_reliability.py); `make reliability` runs
them full-size and writes docs/RELIABILITY.md (python -m tests.reliability).

Each scenario states what it promises of every run (its docstring), injects its fault (only once
the runs it is meant to hit are seen running, where it hits runs at work), then judges every run
on what the run left behind: its command's lines in the session's ledger (one per execution), its
record in Firestore (status, error, transitions, claims), the job's and the recorder's log lines
naming it, the dead letters carrying it. Counts, notes and the injected fault's figures all come
from those measurements and the scenario's parameters.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
from google.cloud.firestore_v1.base_query import FieldFilter

from bench.load import Completions, closed_loop, run_outcome
from control_plane.app import create_app
from control_plane.service import ControlPlane
from devstack.stack import PROJECT_ROOT
from eventarc.definitions import SANDBOX_JOB_TRIGGER
from functions.deadletters import DeadLetter, DeadLetterBox
from tests.reliability.harness import (
    ACKNOWLEDGING_STATUSES,
    ACTION_SECONDS,
    RECORDER,
    STARTED,
    STATUS_REDELIVERY_SECONDS,
    TERMINAL,
    Harness,
    Row,
    Verdict,
    backed_off,
    is_terminal,
    judge,
    ledger_command,
    patience,
    seqs,
    tally,
)
from vibesdk_gcp import clients
from vibesdk_gcp.bus import Bus
from vibesdk_gcp.names import REQUESTS_TOPIC, RUNS_COLLECTION, RUNS_SUBCOLLECTION
from vibesdk_gcp.runs import RunStore
from vibesdk_gcp.schemas import StatusEvent, utcnow
from vibesdk_gcp.settings import Settings
from vibesdk_gcp.storage import storage_for


def tokens(count: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(count)]


def seen_running(run: dict[str, Any] | None) -> bool:
    """The recorder has written the run's running transition (it may have ended since)."""
    return bool(run) and 1 in seqs(run)


def per_unit(counts: dict[str, int]) -> str:
    """'1 on sandbox-job, 2 on sandbox-job-2'."""
    return ", ".join(f"{count} on {unit}" for unit, count in counts.items())


def started_on(h: Harness, run_ids: Iterable[str]) -> str:
    """How many of the runs each job instance started (its "started" lines)."""
    return per_unit({unit: sum(found.values()) for unit, found in h.starts(run_ids).items()})


def duplicates(h: Harness, size: int, copies: int = 3) -> Row:
    """Each request published `copies` times and pushed to the job `copies` times at once, the
    pushes to its instances in turn (copies of one request race on different instances).

    Promise, per run: succeeded, claimed once, executed once (one ledger line).
    """
    session = h.session()
    requests = [(h.request(session, "executeCommands", ledger_command(token)), token) for token in tokens(size)]
    answers: list[int] = []

    def push(request: Any, copy: int) -> int:
        headers, body = h.cloudevent(request, f"direct-{request.runId}-{copy}")
        return httpx.post(h.job_url(copy), content=body, headers=headers, timeout=120).status_code

    def deliver(request: Any) -> None:
        for _ in range(copies):
            h.bus.publish_request(request)
        with ThreadPoolExecutor(copies) as pool:
            answers.extend(pool.map(lambda copy: push(request, copy), range(copies)))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(deliver, [request for request, _ in requests]))
    session_of = {request.runId: session for request, _ in requests}
    runs = h.wait_runs(session_of, timeout=patience(size, redeliveries=2))
    ledger = h.ledger(session)
    verdicts = [
        judge(request.runId, runs[request.runId], ledger.count(token), "succeeded", claims=1)
        for request, token in requests
    ]
    claims = [int((run or {}).get("claims") or 0) for run in runs.values()]
    return Row(
        "duplicates",
        f"each request published {copies}x and pushed {copies}x at once, over {len(h.jobs)} job instances",
        tuple(verdicts),
        note=f"{len(answers)} direct pushes answered {tally(answers)}; claims per run {tally(claims)}; "
        f"started on {started_on(h, session_of)}; "
        f"ledger lines per run {tally(v.effects for v in verdicts)}",
    )


def reordering(h: Harness, size: int, late_copies: int = 1) -> Row:
    """Each run's terminal event published first; once recorded, its running event and the terminal again.

    Promise, per run: succeeded; queued, running, succeeded recorded once each (the late running
    fills its place, the late terminal changes nothing), as the recorder's decisions say.
    """
    session = h.session()
    runs = [h.request(session, "getInstanceStatus", {}) for _ in range(size)]
    session_of = {request.runId: session for request in runs}
    terminals = {
        request.runId: StatusEvent(
            eventId=str(uuid.uuid4()),
            sessionId=session,
            runId=request.runId,
            seq=2,
            status="succeeded",
            time=utcnow(),
            result={"ok": True},
        )
        for request in runs
    }
    log_start = h.log_size(RECORDER)
    for event in terminals.values():
        h.bus.publish_status(event)
    bound = patience(size)
    # The late events go out only once the terminal ones are recorded: "terminal first" is seen, not hoped for.
    first = h.wait_runs(session_of, timeout=bound)
    for terminal in terminals.values():
        h.bus.publish_status(
            terminal.model_copy(update={"eventId": str(uuid.uuid4()), "seq": 1, "status": "running", "result": None})
        )
        for _ in range(late_copies):
            h.bus.publish_status(terminal)
    events = 2 + late_copies
    decisions = h.until(
        lambda: h.decisions(session_of, log_start),
        lambda found: all(len(found[run_id]) >= events for run_id in session_of),
        timeout=bound,
    )
    finals = h.runs(session_of)
    verdicts = []
    for run_id, run in finals.items():
        broken = []
        if not is_terminal(first[run_id]):
            broken.append("its terminal event was not recorded before the running one was sent")
        terminal_decisions = [reason for status, seq, reason in decisions[run_id] if seq == 2]
        running_decisions = [reason for status, seq, reason in decisions[run_id] if seq == 1]
        if terminal_decisions[:1] != ["advanced"] or set(terminal_decisions[1:]) - {"duplicate"}:
            broken.append(f"terminal events decided {terminal_decisions}")
        if len(terminal_decisions) < 1 + late_copies:
            broken.append(f"{len(terminal_decisions)} terminal events reached the recorder, {1 + late_copies} sent")
        if running_decisions[:1] != ["late event recorded"]:
            broken.append(f"late running event decided {running_decisions}")
        recorded_terminals = seqs(run).count(2) if run else 0
        verdicts.append(judge(run_id, run, recorded_terminals, "succeeded", broken=broken))
    return Row(
        "reordering",
        f"terminal event first; once recorded, the running event and {late_copies} more of the terminal",
        tuple(verdicts),
        note="recorder's decisions: "
        + tally(f"{status}: {reason}" for found in decisions.values() for status, _, reason in found)
        + f"; terminal transitions recorded per run {tally(v.effects for v in verdicts)}",
    )


def job_killed(h: Harness, size: int, sig: int = signal.SIGKILL, action_seconds: float = 8) -> Row:
    """`sig` to every sandbox job instance once all its runs are seen running at once, then a new
    process for each.

    Each request is published (Pub/Sub keeps it until it is acknowledged) and pushed to the job
    directly as well, to its instances in turn, all at once, as Eventarc delivers a burst (the
    emulator pushes only a couple at a time): every run is at work when the signal comes, and the
    signal reaches every instance, so it hits every run in flight wherever it runs. The direct push
    of each run in flight (cut by the signal, or refused while the run was at work) is then
    delivered again, as Pub/Sub redelivers a push that was not acknowledged.

    Promise, per run: succeeded, executed once (one ledger line); a run in flight at the kill
    retaken by a later delivery (claimed twice, started again by a new process), one that had
    ended before it claimed once and not started again.
    """
    sessions = [h.session() for _ in range(size)]
    # The job idle first: the live previews' rebuilds that earlier scenarios' writes queued
    # (functions/live.py) would hold workers these runs need all at once.
    h.wait_for(
        "no live preview rebuild at work",
        lambda: [run.runId for run in h.store.unfinished() if run.action == "refreshPreview"],
        lambda rebuilding: not rebuilding,
        timeout=180,
    )
    log_start = h.job_mark()
    runs: dict[str, tuple[str, str]] = {}
    published: dict[str, Any] = {}
    pushes = ThreadPoolExecutor(size)
    pushed = []
    for index, (session, token) in enumerate(zip(sessions, tokens(size), strict=True)):
        # Each its own owner: an owner gets only half the job's workers, and all must be at work at once.
        request = h.request(
            session, "executeCommands", ledger_command(token, f"sleep {action_seconds:g}; "), owner=f"killed-{index}"
        )
        h.bus.publish_request(request)
        headers, body = h.cloudevent(request, f"direct-{request.runId}")
        pushed.append(pushes.submit(httpx.post, h.job_url(index), content=body, headers=headers, timeout=120))
        runs[request.runId] = (session, token)
        published[request.runId] = request
    session_of = {run_id: session for run_id, (session, _) in runs.items()}
    h.wait_for(
        f"all {size} runs seen running at once before the {signal.Signals(sig).name}",
        lambda: h.runs(session_of),
        lambda found: all((run or {}).get("status") == "running" for run in found.values()),
        timeout=patience(1, redeliveries=1),
    )
    signalled = utcnow()
    h.kill_jobs(sig)
    exited = h.job_mark()  # what the killed processes wrote ends here
    h.restart_jobs()
    pushes.shutdown(wait=True)
    answers = [type(f.exception()).__name__ if f.exception() else f.result().status_code for f in pushed]
    started_on_unit = h.starts(runs, log_start, exited)
    started_before = sum(started_on_unit.values(), Counter())
    ended_before = h.ended(runs, log_start, exited)
    in_flight = {run_id for run_id in runs if started_before[run_id] and not ended_before[run_id]}
    in_flight_on = {unit: sum(run_id in in_flight for run_id in found) for unit, found in started_on_unit.items()}
    # A run in flight when every instance dies comes back when its delivery's message is delivered
    # again. The emulator's is no measure of that: it pushes a subscription's messages two at a
    # time, each push waiting for its answer, and backs a message off 1.3-fold per attempt of its
    # own (PushLoop and MessageBacklog.computeBackoff in its jar); in full `make test` runs it held
    # the killed runs' messages 3 min 47 s and past 5 min, and in CI past the test's 300 s. So each
    # killed direct push is delivered again as Pub/Sub redelivers a failed push: the same message,
    # after the trigger's backoff, until acknowledged (a 409 before the kill was no ack either).
    # What is judged is our code: refused while the dead holder's lease lives, then retaken
    # (claimed again), executed once (one ledger line).
    redelivery_answers: dict[str, list[int | str]] = {run_id: [] for run_id in sorted(in_flight)}
    redelivery_patience = patience(1, redeliveries=3, action_seconds=action_seconds + ACTION_SECONDS)
    with ThreadPoolExecutor(max(len(in_flight), 1)) as redeliveries:
        delivered = [
            redeliveries.submit(redeliver, h, published[run_id], f"direct-{run_id}", turn, found, redelivery_patience)
            for turn, (run_id, found) in enumerate(redelivery_answers.items())
        ]
    for redelivery in delivered:
        redelivery.result()
    finals = h.wait_runs(session_of, timeout=patience(1, redeliveries=1, action_seconds=action_seconds))
    started_after = h.executions(runs, exited)
    retaken = [
        (datetime.fromisoformat(e.entry["time"]) - signalled).total_seconds()
        for entries in h.job_log(exited).values()
        for e in entries
        if e.run_id in in_flight and STARTED.match(e.message)
    ]
    verdicts = []
    for run_id, (session, token) in runs.items():
        broken = []
        if run_id in in_flight and not started_after[run_id]:
            broken.append("in flight at the kill, never started again")
        if run_id not in in_flight and started_after[run_id]:
            broken.append(f"ended before the kill, started again {started_after[run_id]} times")
        claims = 2 if run_id in in_flight else 1
        effects = h.ledger(session).count(token)
        verdicts.append(judge(run_id, finals[run_id], effects, "succeeded", claims=claims, broken=broken))
    name = signal.Signals(sig).name
    claims_seen = [int((run or {}).get("claims") or 0) for run in finals.values()]
    return Row(
        "job killed mid-action",
        f"{name} to each of the {len(h.jobs)} sandbox job instances once its {size} runs ({action_seconds:g} s "
        "actions) were seen running; each restarted",
        tuple(verdicts),
        note=f"{len(in_flight)} of {size} in flight at the {name} ({per_unit(in_flight_on)}; direct pushes: "
        f"{tally(answers)}), started again "
        + (f"{min(retaken):.1f}–{max(retaken):.1f} s after it" if retaken else "never")
        + f"; redeliveries answered {tally(a for found in redelivery_answers.values() for a in found)}"
        + f"; claims per run {tally(claims_seen)}; ended {tally((r or {}).get('status') for r in finals.values())}; "
        f"ledger lines per run {tally(v.effects for v in verdicts)}",
        checks=() if in_flight else (f"no run was in flight at the {name}: the fault hit nothing",),
    )


def redeliver(h: Harness, request: Any, message_id: str, turn: int, answers: list[int | str], timeout: float) -> None:
    """Deliver `message_id` again, as Pub/Sub does a push that failed: after the trigger's backoff
    (growing with each refusal), to an instance in turn, cut at the trigger's ack deadline as a push
    is, until acknowledged or `timeout` has passed. Each answer goes into `answers` (a status, or
    the error's name: a cut push is no ack either)."""
    deadline = time.monotonic() + timeout
    ack_deadline = SANDBOX_JOB_TRIGGER.managed.ack_deadline_seconds
    headers, body = h.cloudevent(request, message_id)
    for attempt in itertools.count():
        time.sleep(backed_off(attempt + 1) - backed_off(attempt))
        try:
            status = httpx.post(
                h.job_url(turn + attempt), content=body, headers=headers, timeout=ack_deadline
            ).status_code
        except httpx.HTTPError as error:
            answers.append(type(error).__name__)
        else:
            answers.append(status)
            if status in ACKNOWLEDGING_STATUSES:
                return
        if time.monotonic() > deadline:
            return


def lease_expired(h: Harness, size: int, lease_seconds: float = 0.1, grace: float = 0, queue_timeout: float = 0) -> Row:
    """Runs whose job vanished for good (claimed, never finished) and runs nobody ever took; then the sweeper.

    Promise, per run: ended by the sweeper once, failed with 'lease expired' (claimed) or
    'expired in queue' (never claimed), queued then failed, never executed.
    """
    session = h.session()
    claimed = [h.request(session, "executeCommands", {"commands": ["true"]}) for _ in range(size)]
    for request in claimed:
        taken = h.store.claim(session, request.runId, "gone-job", 1, lease_seconds=lease_seconds, check_order=False)
        assert taken == "claimed", f"run {request.runId} could not be claimed for the scenario: {taken}"
    never = [h.request(session, "executeCommands", {"commands": ["true"]}) for _ in range(size)]
    expected = {r.runId: "lease expired" for r in claimed} | {r.runId: "expired in queue" for r in never}
    session_of = dict.fromkeys(expected, session)
    # The sweep comes once every claim has lapsed, as the runs' own leases say.
    lapse = max(run["claim"]["leaseUntil"] for run in h.runs({r.runId: session for r in claimed}).values())
    h.wait_for("every claim lapsed", utcnow, lambda now: now > lapse, timeout=lease_seconds + 10)
    env = h.stack.env | {
        "VIBESDK_SWEEP_GRACE_SECONDS": str(grace),
        "VIBESDK_QUEUE_TIMEOUT_SECONDS": str(queue_timeout),
    }
    swept = subprocess.run(
        [sys.executable, "-m", "functions.sweeper"],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    endings = [line.split(": ", 1) for line in swept.stdout.splitlines() if ": " in line]
    ended = {run_id: [reason for rid, reason in endings if rid == run_id] for run_id in expected}
    finals = h.runs(session_of)  # the sweep is synchronous: its runs are terminal when it returns, or stuck
    executed = h.executions(expected)
    verdicts = []
    for run_id, reason in expected.items():
        broken = [f"ended by the sweeper as {ended[run_id]}"] if set(ended[run_id]) - {reason} else []
        if executed[run_id]:
            broken.append(f"executed {executed[run_id]} times, though never delivered")
        verdicts.append(
            judge(run_id, finals[run_id], len(ended[run_id]), "failed", error=reason, path=(0, 2), broken=broken)
        )
    kind = {r.runId: "claimed" for r in claimed} | {r.runId: "never claimed" for r in never}
    return Row(
        "lease expired",
        f"{size} runs claimed by a job that vanished (lease {lease_seconds:g} s), {size} never claimed; "
        f"sweeper with grace {grace:g} s, queue timeout {queue_timeout:g} s",
        tuple(verdicts),
        note="sweeper ended "
        + tally(f"{kind[run_id]}: '{(finals[run_id] or {}).get('error')}'" for run_id in expected if ended[run_id])
        + f"; executions {tally(executed[run_id] for run_id in expected)}",
    )


def recorder_down(h: Harness, size: int, seconds: float) -> Row:
    """The recorder stops answering (its processes frozen) while runs run and end, then comes back.

    Frozen rather than killed: the emulator stops redelivering a message after a few refused
    connections (Google Cloud keeps to the retry policy); a frozen recorder times the pushes out
    instead, which the emulator retries as Pub/Sub does.

    Promise, per run: nothing recorded while the recorder is down; once it is back, succeeded with
    queued, running, succeeded recorded once each; claimed once, executed once (one ledger line).
    """
    session = h.session()
    log_start = h.job_mark()
    down = time.monotonic()
    h.pause(RECORDER)
    try:
        tokens_of = {h.queue(session, "executeCommands", ledger_command(token)): token for token in tokens(size)}
        # Down while the job runs and ends them all (its log says when), and for `seconds` at least.
        ended = h.until(
            lambda: h.ended(tokens_of, log_start),
            lambda found: all(found[run_id] for run_id in tokens_of),
            timeout=patience(size),
        )
        rest = seconds - (time.monotonic() - down)
        if rest > 0:
            time.sleep(rest)  # the outage itself, as long as the scenario says: not a wait for anything
        during = h.runs(dict.fromkeys(tokens_of, session))
    finally:
        h.resume(RECORDER)
    back = time.monotonic()
    session_of = dict.fromkeys(tokens_of, session)
    finals = h.wait_runs(session_of, timeout=STATUS_REDELIVERY_SECONDS + patience(size))
    recorded = time.monotonic() - back
    ledger = h.ledger(session)
    verdicts = []
    for run_id, token in tokens_of.items():
        broken = [] if during[run_id]["seq"] == 0 else [f"{during[run_id]['status']} recorded while it was down"]
        verdicts.append(judge(run_id, finals[run_id], ledger.count(token), "succeeded", claims=1, broken=broken))
    ended_down = sum(bool(ended[run_id]) for run_id in tokens_of)
    recorded_down = sum(run["seq"] != 0 for run in during.values())
    return Row(
        "status recorder down",
        f"recorder frozen (SIGSTOP) for {back - down:.0f} s while its {size} runs ran",
        tuple(verdicts),
        note=f"{ended_down} of {size} runs ended by the job while it was down, {recorded_down} recorded then; "
        f"every run terminal {recorded:.1f} s after it was back, ended {tally(r['status'] for r in finals.values())}; "
        f"ledger lines per run {tally(v.effects for v in verdicts)}",
        checks=() if ended_down else ("no run ended while the recorder was down: the fault hit nothing",),
    )


def services_unavailable(h: Harness, size: int) -> Row:
    """POST /api/agent while Pub/Sub, then Firestore, cannot be reached.

    Promise, per request: 503 with Retry-After and a message naming what failed; at most one run
    written, already failed 'not queued' when the answer comes; never executed.
    """
    from starlette.testclient import TestClient

    good = h.settings
    broken_services = {
        "Pub/Sub": ("PUBSUB_EMULATOR_HOST", "publish"),
        "Firestore": ("FIRESTORE_EMULATOR_HOST", "firestore"),
    }
    sessions = h.store._client.collection(RUNS_COLLECTION)
    answers: list[tuple[str, httpx.Response, list[dict[str, Any]]]] = []
    for service, (variable, _) in broken_services.items():
        broken = Settings.from_env(h.stack.env | {variable: "127.0.0.1:9"})
        store = RunStore(clients.firestore_client(broken)) if variable.startswith("FIRESTORE") else h.store
        bus = Bus(clients.publisher_client(broken), broken.project) if variable.startswith("PUBSUB") else h.bus
        plane = ControlPlane(store, bus, storage_for(good))
        with TestClient(create_app(good, plane)) as client:
            for _ in range(size):
                before = utcnow()
                response = client.post(
                    "/api/agent",
                    json={"templateName": "python-app"},
                    headers={"Authorization": f"Bearer {good.api_token}"},
                )
                after = utcnow()
                # The runs this request wrote, as they are when it is answered.
                written = [
                    run.model_dump()
                    for snapshot in sessions.where(filter=FieldFilter("createdAt", ">=", before))
                    .where(filter=FieldFilter("createdAt", "<=", after))
                    .stream()
                    for run in h.store.runs_of(snapshot.id)
                ]
                answers.append((service, response, written))
    executed = h.executions(run["runId"] for _, _, written in answers for run in written)
    verdicts = []
    for index, (service, response, written) in enumerate(answers):
        named = broken_services[service][1]
        problems = []
        if response.status_code != 503:
            problems.append(f"answered {response.status_code}, not 503")
        if "Retry-After" not in response.headers:
            problems.append("no Retry-After")
        text = response.text.lower()
        if named not in text or ("unavailable" not in text and "could not" not in text):
            problems.append(f"the answer does not say {service} failed: {response.text[:200]}")
        if len(written) > 1:
            problems.append(f"{len(written)} runs written")
        for run in written:
            if run["status"] != "failed" or not (run.get("error") or "").startswith("not queued"):
                problems.append(f"its run was {run['status']} ({run.get('error')}) when answered")
        effects = sum(executed[run["runId"]] for run in written)
        due = 1 if response.is_success else 0
        if effects > due:
            problems.append(f"refused, yet executed {effects} times")
        terminal = all(map(is_terminal, written)) if written else None
        verdicts.append(Verdict(f"POST {index + 1} ({service} down)", effects, due, terminal, tuple(problems)))
    return Row(
        "Pub/Sub or Firestore unreachable",
        f"POST with {' then '.join(broken_services)} unreachable, {size} each",
        tuple(verdicts),
        note=f"answers {tally(response.status_code for _, response, _ in answers)}, "
        f"Retry-After on {sum('Retry-After' in response.headers for _, response, _ in answers)}; runs written "
        + ", ".join(
            f"with {service} down {sum(len(w) for s, _, w in answers if s == service)}" for service in broken_services
        )
        + "; at the answer "
        + tally(f"{run['status']} '{(run.get('error') or '').split(':')[0]}'" for _, _, w in answers for run in w)
        + f"; executions {tally(executed[run['runId']] for _, _, w in answers for run in w)}",
    )


POISON = {
    "bad JSON": "is not JSON",
    "unknown schema version": "unknown schema version",
    "unknown action": "is not a valid SandboxRequest",
}


def poison(h: Harness, size: int) -> Row:
    """Requests that can never be processed, each kind in turn, published to the trigger's topic.

    Promise, per message: set aside on the dead-letter topic once, with its reason; a message that
    names its run fails that run with the reason; never executed.
    """
    session = h.session()
    box = DeadLetterBox(h.settings)
    publisher = clients.publisher_client(h.settings)
    topic = publisher.topic_path(h.settings.project, REQUESTS_TOPIC)
    messages: list[tuple[str, str, str | None]] = []  # kind, marker in its data, the run it names
    for index in range(size):
        kind = list(POISON)[index % len(POISON)]
        marker = uuid.uuid4().hex
        run_id = None
        if kind == "bad JSON":
            data, attributes = b"\xff not json " + marker.encode(), {}
        elif kind == "unknown schema version":
            data, attributes = json.dumps({"sessionId": marker}).encode(), {"schemaVersion": "99"}
        else:
            request = h.request(session, "executeCommands", {"commands": ["true"]})
            data = json.dumps({**json.loads(request.model_dump_json()), "action": "launchRocket"}).encode()
            attributes, marker, run_id = request.attributes(), request.runId, request.runId
        publisher.publish(topic, data, **attributes).result()
        messages.append((kind, marker, run_id))
    bound = patience(size)
    # Only this scenario's letters count: each is known by the marker in its data.
    letters: dict[str, DeadLetter] = {}

    def ours() -> dict[str, list[DeadLetter]]:
        for letter in box.peek(1000):
            letters[letter.message_id] = letter
        return {marker: [x for x in letters.values() if marker.encode() in x.data] for _, marker, _ in messages}

    found = h.until(ours, lambda found: all(found.values()), timeout=bound)
    named = {run_id: session for _, _, run_id in messages if run_id}
    runs = h.wait_runs(named, timeout=bound) if named else {}
    executed = h.executions(named)
    verdicts = []
    for index, (kind, marker, run_id) in enumerate(messages):
        broken = [
            f"dead-lettered as {letter.reason!r}, not {POISON[kind]!r}"
            for letter in found[marker]
            if POISON[kind] not in letter.reason
        ]
        name = f"message {index + 1} ({kind})"
        if run_id is None:
            verdicts.append(Verdict(name, len(found[marker]), 1, None, tuple(broken)))
            continue
        if executed[run_id]:
            broken.append(f"executed {executed[run_id]} times")
        verdicts.append(
            judge(name, runs[run_id], len(found[marker]), "failed", error=POISON[kind], claims=0, broken=broken)
        )
    reasons = [kind for kind, marker, _ in messages for letter in found[marker] if POISON[kind] in letter.reason]
    return Row(
        "poison messages",
        f"{', '.join(POISON)}, {size} messages in turn",
        tuple(verdicts),
        note=f"dead letters per message {tally(v.effects for v in verdicts)}, with the reason: {tally(reasons)}; "
        f"named runs {tally((run or {}).get('status') for run in runs.values())}; "
        f"executions {tally(executed[run_id] for run_id in named)}",
    )


def graceful_shutdown(h: Harness, size: int, sig: int = signal.SIGTERM, action_seconds: float = 2) -> Row:
    """`sig` to every sandbox job instance once the first of a session's runs is seen running, then a
    new process for each.

    Promise, per run: succeeded, claimed once, executed once (one ledger line); a run in flight at
    the signal finished by its old process before it exited, and not started again; each of the
    others run once, by an old process before it exits or by a new one.
    """
    session = h.session()
    log_start = h.job_mark()
    tokens_of = {
        h.queue(session, "executeCommands", ledger_command(token, f"sleep {action_seconds:g}; ")): token
        for token in tokens(size)
    }
    session_of = dict.fromkeys(tokens_of, session)
    first = next(iter(tokens_of))
    h.wait_for(
        "the first run seen running before the signal",
        lambda: h.run(session, first),
        seen_running,
        timeout=patience(1, redeliveries=1),
    )
    signalled_at = h.job_mark()
    signalled = time.monotonic()
    h.kill_jobs(sig)
    exit_seconds = time.monotonic() - signalled
    exited = h.job_mark()
    h.restart_jobs()
    started_before, ended_before = (
        h.executions(tokens_of, log_start, signalled_at),
        h.ended(tokens_of, log_start, signalled_at),
    )
    in_flight = {run_id for run_id in tokens_of if started_before[run_id] and not ended_before[run_id]}
    finished_in_time = h.ended(in_flight, signalled_at, exited)
    finals = h.wait_runs(
        session_of, timeout=patience(size, redeliveries=2, action_seconds=action_seconds + ACTION_SECONDS)
    )
    started_after = h.executions(tokens_of, exited)
    started_late = h.executions(tokens_of, signalled_at, exited)  # by the old process, after the signal
    ledger = h.ledger(session)
    verdicts = []
    for run_id, token in tokens_of.items():
        broken = []
        if run_id in in_flight and not finished_in_time[run_id]:
            broken.append(f"in flight at the {signal.Signals(sig).name}, not finished before the job exited")
        if run_id in in_flight and started_after[run_id]:
            broken.append(f"in flight at the {signal.Signals(sig).name}, started again after the restart")
        verdicts.append(judge(run_id, finals[run_id], ledger.count(token), "succeeded", claims=1, broken=broken))
    name = signal.Signals(sig).name
    after = sum(bool(started_after[run_id]) for run_id in tokens_of)
    return Row(
        "graceful shutdown",
        f"{name} to each of the {len(h.jobs)} sandbox job instances once the first of {size} runs "
        f"({action_seconds:g} s actions) was seen running; each restarted",
        tuple(verdicts),
        note=f"{len(in_flight)} in flight at the {name}, {sum(map(bool, finished_in_time.values()))} of them finished "
        f"by the old processes, which started {sum(map(bool, started_late.values()))} more after the signal and "
        f"had all exited {exit_seconds:.1f} s after it; {after} started after the restart; "
        f"claims per run {tally(int((r or {}).get('claims') or 0) for r in finals.values())}; "
        f"ledger lines per run {tally(v.effects for v in verdicts)}",
        checks=() if in_flight else (f"no run was in flight at the {name}: the fault hit nothing",),
    )


def load(h: Harness, size: int, concurrency: int) -> Row:
    """`size` new sessions through the API, `concurrency` at a time, each waited for before the next.

    Promise, per run: succeeded, queued, running, succeeded recorded once each, claimed once.
    """
    started: list[tuple[str, str]] = []
    item_bound = patience(1, redeliveries=3)

    async def measure() -> Any:
        completions = Completions(asyncio.get_running_loop(), h.store._client, run_outcome, "status")
        async with httpx.AsyncClient(base_url=h.stack.api_url, headers=h.api.headers, timeout=60) as client:

            async def start_one() -> str:
                body = {"templateName": "python-app", "action": "getInstanceStatus"}
                queued = (await client.post("/api/agent", json=body)).raise_for_status().json()
                started.append((queued["sessionId"], queued["runId"]))
                return f"{RUNS_COLLECTION}/{queued['sessionId']}/runs/{queued['runId']}"

            try:
                return await closed_loop(size, concurrency, start_one, completions, timeout=item_bound)
            finally:
                completions.close()

    checks: tuple[str, ...] = ()
    try:
        result = asyncio.run(measure())
    except (TimeoutError, httpx.HTTPError) as error:
        result, checks = None, (f"the load stopped: {error}",)
    finals = h.runs({run_id: session for session, run_id in started})
    verdicts = [judge(run_id, run, int((run or {}).get("claims") or 0), "succeeded") for run_id, run in finals.items()]
    verdicts += [Verdict(f"POST {n + 1}", 0, 1, None, ("never accepted",)) for n in range(len(started), size)]
    summary = result.summary() if result else {}
    figures = (
        f"{summary['runs_per_second']} runs/s; p50 {summary['p50_ms']} ms, p95 {summary['p95_ms']} ms, "
        f"p99 {summary['p99_ms']} ms"
        if summary
        else "no figures: the load stopped"
    )
    return Row(
        "load",
        f"{size} runs through the API at concurrency {concurrency}",
        tuple(verdicts),
        note=f"{figures}; ended {tally((r or {}).get('status') for r in finals.values())}; "
        f"claims per run {tally(v.effects for v in verdicts)}",
        checks=checks,
    )


def possible(run: dict[str, Any]) -> bool:
    """A run the state machine could have produced: queued first, in order, status of its last step."""
    seqs = [t["seq"] for t in run["transitions"]]
    statuses = [t["status"] for t in run["transitions"]]
    return (
        statuses[0] == "queued"
        and seqs == sorted(set(seqs))
        and all(status not in TERMINAL for status in statuses[:-1])
        and run["status"] == statuses[seqs.index(run["seq"])]
    )


def fuzz(h: Harness, examples: int) -> Row:
    """schemathesis against /openapi.json.

    Promise: no 5xx; every run the fuzzing queued is claimed once and reaches a terminal state
    the state machine allows; no run of the project is in an impossible state.
    """
    began = utcnow()
    env = dict(os.environ) | {"VIBESDK_API_TOKEN": h.api.headers["Authorization"].split()[1]}
    result = subprocess.run(
        [
            str(PROJECT_ROOT / ".venv" / "bin" / "schemathesis"),
            "run",
            f"{h.stack.api_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(examples),
            "--header",
            f"Authorization: Bearer {env['VIBESDK_API_TOKEN']}",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    runs_group = h.store._client.collection_group(RUNS_SUBCOLLECTION)
    ours = {
        run["runId"]: run["sessionId"]
        for run in (s.to_dict() for s in runs_group.where(filter=FieldFilter("createdAt", ">=", began)).stream())
    }
    per_session = max((list(ours.values()).count(session) for session in set(ours.values())), default=0)
    finals = h.wait_runs(ours, timeout=patience(per_session, redeliveries=1)) if ours else {}
    verdicts = []
    for run_id, run in finals.items():
        terminal = is_terminal(run)
        broken = () if run and possible(run) else ("in a state the state machine cannot produce",)
        verdicts.append(Verdict(run_id, int((run or {}).get("claims") or 0), 1, terminal, broken))
    others = [
        run
        for run in (snapshot.to_dict() for snapshot in runs_group.stream())
        if run["runId"] not in ours and not possible(run)
    ]
    verdicts += [Verdict(f"earlier run {run['runId']}", 1, 1, None, ("in an impossible state",)) for run in others]
    cases = re.search(r"(\d+) generated", result.stdout)
    server_errors = result.stdout[result.stdout.find("FAILURES") :][:2000] if result.returncode else ""
    return Row(
        "API fuzzing",
        f"schemathesis, {examples} examples per operation",
        tuple(verdicts),
        note=f"{cases[1] if cases else 'an unreported number of'} test cases, exit code {result.returncode}; "
        f"{len(ours)} runs queued, ended {tally((r or {}).get('status') for r in finals.values())}; "
        f"{len(others)} earlier runs in an impossible state",
        checks=(f"schemathesis: {server_errors}",) if result.returncode else (),
    )
