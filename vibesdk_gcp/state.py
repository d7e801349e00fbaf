"""The run state machine: queued -> running -> succeeded | failed, queued -> failed.

Each status event carries a per-run sequence number (queued 0, running 1,
terminal 2). A run's status is that of its highest applied sequence number;
a late event for a lower number only fills its place in the transition list.
"""

from __future__ import annotations

from dataclasses import dataclass

from vibesdk_gcp.schemas import RunStatus

TERMINAL: frozenset[str] = frozenset({"succeeded", "failed"})

# Which statuses may follow which; terminal states have no successor.
NEXT: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed"}),
    "running": frozenset({"succeeded", "failed"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
}

SEQ_QUEUED = 0
SEQ_RUNNING = 1
SEQ_TERMINAL = 2


def reachable(current: str, target: str) -> bool:
    """Whether target can follow current through one or more legal steps."""
    frontier = set(NEXT[current])
    seen: set[str] = set()
    while frontier:
        status = frontier.pop()
        if status == target:
            return True
        seen.add(status)
        frontier |= NEXT[status] - seen
    return False


@dataclass(frozen=True)
class Decision:
    """What applying one event to a run does."""

    advance: bool  # the run's status moves to the event's status
    record: bool  # the event's transition is added to the list
    reason: str


def decide(current_status: str, current_seq: int, seen_seqs: set[int], status: RunStatus, seq: int) -> Decision:
    if seq in seen_seqs:
        return Decision(False, False, "duplicate")
    if seq > current_seq:
        if current_status in TERMINAL:
            return Decision(False, False, f"run is already {current_status}")
        if not reachable(current_status, status):
            return Decision(False, False, f"{current_status} cannot become {status}")
        return Decision(True, True, "advanced")
    # A late event: keep the history complete when it fits the path taken.
    if status in TERMINAL or not reachable(status, current_status):
        return Decision(False, False, f"late {status} does not fit a {current_status} run")
    return Decision(False, True, "late event recorded")
