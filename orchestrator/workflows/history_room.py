"""How many more sub-calls a node's workflow run has room for in its Temporal history.

The Temporal server terminates a workflow whose history passes its limits (by default 51,200 events,
``limit.historyCount.error``, and 50 MB, ``limit.historySize.error``): the node would end without
recording it, its run would stand unfinished in the store with its budget still held, and a restart
would fill the history the same way. Every sub-call adds to its node's history, so a node takes a batch
only while its history, with what the sub-calls under way and the batch will add, stays under
``Limits.max_run_events`` and ``MAX_RUN_BYTES``. Past that the cell's call is refused with what to do,
and the node continues as new (a fresh history) at its next iteration. Deterministic code only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryCost:
    events: int
    size: int  # bytes


# What one sub-call adds to its node's history at most, measured with prompts of about 100 characters
# and rounded up for prompts and answers at the inline limit (longer ones travel as blob references):
# - a child workflow (a Leaf, or an RLM node): its start, started and completed events, and the
#   node's workflow tasks that record them: 4.5 events a child when 1,000 complete together, 8.2 when
#   200 trickle in at 500 ms and 8 at once (a workflow task for the started event and one for the
#   completion, 9 events at most); 3.4 KB;
# - an inline leaf: its local activity's marker, 1.04-1.19 events and 0.9 KB, its prompt in the Update.
CHILD_WORKFLOW = HistoryCost(events=9, size=6144)
INLINE_LEAF = HistoryCost(events=2, size=1536)
# Under the server's default size limit by what the node itself may add after a batch (its later
# steps, failed items' reasons in the reply), as the default Limits.max_run_events is under its count.
MAX_RUN_BYTES = 45_000_000


class HistoryRoom:
    """The sub-calls of one workflow run of a node, counted against its history's limits."""

    def __init__(self, max_events: int) -> None:
        self.max_events = max_events
        self._pending = HistoryCost(0, 0)  # what accepted sub-calls still running will add
        self.full = False  # a batch was refused: the node continues as new at its next iteration

    def refusal(self, length: int, size: int, cost: HistoryCost, wanted: int) -> str | None:
        """None when ``wanted`` sub-calls of ``cost`` fit beside a history of ``length`` events and
        ``size`` bytes (then they count as pending until each has ``ended``), else why not."""
        events = length + self._pending.events + cost.events * wanted
        total = size + self._pending.size + cost.size * wanted
        if events <= self.max_events and total <= MAX_RUN_BYTES:
            self._pending = HistoryCost(
                self._pending.events + cost.events * wanted, self._pending.size + cost.size * wanted
            )
            return None
        self.full = True
        return (
            f"this node's workflow run holds {length:,} history events ({size / 1e6:.1f} MB): {wanted} more "
            f"sub-calls would take it past the {self.max_events:,} events or {MAX_RUN_BYTES / 1e6:.0f} MB "
            "it keeps under the Temporal server's limits; put several questions in each prompt (fewer, "
            "bigger chunks), or end this iteration: the node continues in a fresh run"
        )

    def ended(self, cost: HistoryCost) -> None:
        """One accepted sub-call ended: its events are in the history now."""
        self._pending = HistoryCost(self._pending.events - cost.events, self._pending.size - cost.size)
