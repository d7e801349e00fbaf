"""A session's run transitions as they land, from its runs' listener: the GET .../events feed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol, Self

from control_plane.models import TransitionEvent
from control_plane.sse import Message
from vibesdk_gcp.runs import RunDoc
from vibesdk_gcp.runs.calls import OUTAGES, unavailable
from vibesdk_gcp.runs.watches import Listener
from vibesdk_gcp.state import SEQ_QUEUED, TERMINAL

# A stream starts with the transitions of the session's latest runs only.
REPLAY_RUNS = 100
# How far a writer's clock (a transition's `at`) may run ahead of Firestore's (a document's
# update_time): the resume point is taken this much earlier, so that nothing is lost to skew.
CLOCK_SKEW = timedelta(seconds=10)


class Landed(NamedTuple):
    """When a run's document was made and last changed, in Firestore's time."""

    created: datetime
    changed: datetime


class Slot(Protocol):
    """One of the owner's open streams: taken while the feed is open."""

    def take(self) -> None: ...

    def give_back(self) -> None: ...


def transitions_of(runs: Iterable[RunDoc]) -> list[TransitionEvent]:
    """Every transition of the runs, in the order the feed sends them: by time, then run and seq."""
    pairs = [(run, transition) for run in runs for transition in run.transitions]
    ordered = sorted(pairs, key=lambda pair: (pair[1].at, pair[0].runId, pair[1].seq))
    return [
        TransitionEvent(
            runId=run.runId,
            action=run.action,
            seq=transition.seq,
            status=transition.status,
            at=transition.at.isoformat(),
            error=run.error if transition.status in TERMINAL and transition.seq == run.seq else None,
        )
        for run, transition in ordered
    ]


def message_of(event: TransitionEvent) -> Message:
    return Message(event.event_id, "transition", event.model_dump_json(exclude_none=True))


def seen_before(runs: Iterable[RunDoc], landed: Mapping[str, Landed], after: str | None) -> set[str]:
    """The ids a client that last saw `after` has surely seen (of the runs, as they stand).

    Live, the feed sends in landing order, not by `at`: a terminal can land before its run's late
    running, one run's end after another's queued. So the resume point is a watermark, a time by
    which `after` had surely not landed yet: its run's creation (Firestore's clock), or its `at`
    less the clock skew, whichever is later. A run whose document changed since is sent again
    whole, save `after` itself and its queued transition (always a run's first to land) if sent
    before it. One batch (the replay, a live update of several runs) is sent by `at`, not in
    landing order: so of a run unchanged since, only what sorts before `after` is taken as seen;
    what sorts after it may have been in the batch the client left early. Unknown (a garbled id, a
    run since deleted): nothing is.
    """
    runs = list(runs)
    run_id, _, seq = (after or "").rpartition(":")
    named = next((run for run in runs if run.runId == run_id), None)
    at = next((item.at for item in named.transitions if str(item.seq) == seq), None) if named else None
    if named is None or at is None:
        return set()
    when = {run.runId: landed.get(run.runId, Landed(run.createdAt, run.updatedAt)) for run in runs}
    watermark = max(when[run_id].created, at - CLOCK_SKEW)
    last_seen = (at, run_id, int(seq))
    seen = {f"{run_id}:{seq}"}
    for run in runs:
        sent_before = {
            f"{run.runId}:{item.seq}" for item in run.transitions if (item.at, run.runId, item.seq) <= last_seen
        }
        if run.runId == run_id:
            seen.update(sent_before & {f"{run_id}:{SEQ_QUEUED}"})
        elif when[run.runId].changed <= watermark:
            seen.update(sent_before)
    return seen


class ListenedFeed:
    """A stream's source fed by a Firestore listener, holding a slot (one of the owner's streams, a
    preview's pages) while it is open."""

    def __init__(self, listener: Listener, slot: Slot | None) -> None:
        self._listener = listener
        self._slot = slot

    async def __aenter__(self) -> Self:
        """Take the slot, then subscribe: refused (TooMany, ServiceUnavailable), the slot goes back."""
        if self._slot is not None:
            self._slot.take()
        try:
            await self._listener.__aenter__()
        except OUTAGES as error:
            self._give_back()
            raise unavailable(error) from error
        except BaseException:
            self._give_back()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Left once or more (at the stream's deadline, then at its end): the slot goes back once."""
        await self._listener.__aexit__(*exc_info)
        self._give_back()

    def _give_back(self) -> None:
        if self._slot is not None:
            self._slot.give_back()
            self._slot = None


class TransitionFeed(ListenedFeed):
    """Each transition once: those already there first (of the latest runs), then each as it lands.

    `after` is a Last-Event-ID: a client that reconnects gets what may have landed since (seen_before).
    """

    def __init__(self, listener: Listener, after: str | None = None, slot: Slot | None = None) -> None:
        super().__init__(listener, slot)
        self._after = after
        self._sent: set[str] | None = None

    async def next(self) -> Sequence[Message]:
        # Cut short by a timeout, the wait loses nothing (the listener keeps what arrived).
        update = await self._listener.take()
        if self._sent is None:
            # The first: the whole set, of which the latest runs are replayed.
            snapshots = sorted((s for s in update.snapshots if s.exists), key=lambda s: s.create_time)
            snapshots = snapshots[-REPLAY_RUNS:]
        else:
            # Then only the documents that changed are read again.
            snapshots = [s for s in update.changed.values() if s.exists]
        runs = [RunDoc.model_validate(snapshot.to_dict()) for snapshot in snapshots]
        landed = {
            run.runId: Landed(snapshot.create_time, snapshot.update_time)
            for run, snapshot in zip(runs, snapshots, strict=True)
        }
        return [message_of(event) for event in self.new(runs, landed)]

    def new(self, runs: Iterable[RunDoc], landed: Mapping[str, Landed] | None = None) -> list[TransitionEvent]:
        """The transitions of the runs (the session's, or those changed since) not sent yet;
        `landed`: when each run's document was made and last changed (else its createdAt, updatedAt)."""
        runs = list(runs)
        if self._sent is None:
            self._sent = seen_before(runs, landed or {}, self._after)
        fresh = [event for event in transitions_of(runs) if event.event_id not in self._sent]
        self._sent.update(event.event_id for event in fresh)
        return fresh
