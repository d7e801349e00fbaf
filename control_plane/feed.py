"""A session's run transitions as they land, from its runs' listener: the GET .../events feed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from control_plane.models import TransitionEvent
from control_plane.sse import Message
from vibesdk_gcp.runs import RunDoc
from vibesdk_gcp.runs.watches import Listener
from vibesdk_gcp.state import TERMINAL


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


class TransitionFeed:
    """Each transition once: those already there first, then each as it lands.

    `after` is a Last-Event-ID: a client that reconnects skips every transition the feed's order
    puts at or before it (a transition of another run that lands later with an earlier time is
    then skipped too; run transitions of one session rarely interleave so).
    """

    def __init__(self, listener: Listener, after: str | None = None) -> None:
        self._listener = listener
        self._after = after
        self._sent: set[str] | None = None

    async def __aenter__(self) -> TransitionFeed:
        await self._listener.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._listener.__aexit__(*exc_info)

    async def next(self) -> Sequence[Message]:
        # A fresh iterator each time: cut short by a timeout, the wait loses nothing (the
        # listener's queue keeps its snapshots).
        snapshots = await anext(aiter(self._listener))
        runs = [RunDoc.model_validate(snapshot.to_dict()) for snapshot in snapshots if snapshot.exists]
        return [message_of(event) for event in self.new(runs)]

    def new(self, runs: Iterable[RunDoc]) -> list[TransitionEvent]:
        """The transitions of the runs (all of the session's, as they stand) not sent yet."""
        events = transitions_of(runs)
        if self._sent is None:
            self._sent = set()
            ids = [event.event_id for event in events]
            if self._after in ids:
                self._sent = set(ids[: ids.index(self._after) + 1])
        fresh = [event for event in events if event.event_id not in self._sent]
        self._sent.update(event.event_id for event in fresh)
        return fresh
