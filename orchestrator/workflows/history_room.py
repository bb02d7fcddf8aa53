"""How many more sub-calls a node's workflow run has room for in its Temporal history.

The Temporal server terminates a workflow whose history passes its limits (by default 51,200 events,
``limit.historyCount.error``, and 50 MB, ``limit.historySize.error``): the node would end without
recording it, its run would stand unfinished in the store with its budget still held, and a restart
would fill the history the same way. Every sub-call adds to its node's history, so a node takes a batch
only while its history, with what the sub-calls under way and the batch will add, stays under
``Limits.max_run_events`` and ``Limits.max_run_bytes``. Past that the cell's call is refused with what to do,
and the node continues as new (a fresh history) at its next iteration. Deterministic code only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.workflows.common import MEMO_CHARS
from orchestrator.workflows.types import INLINE_CHARS, Text


@dataclass(frozen=True)
class HistoryCost:
    events: int
    size: int  # bytes


@dataclass(frozen=True)
class SubcallShape:
    """Where one sub-call's texts land in its node's history, and what it adds besides them."""

    events: int
    fixed_bytes: int
    prompt_copies: int  # its prompt: in the Update, and in a child's input
    answer_copies: int  # its answer: in the child's result or the leaf's marker, and in the reply
    memo_copies: int  # its title again: in a child's memo and its Web UI summary


# What one sub-call adds to its node's history at most. Events, measured with prompts of about 100
# characters: a child workflow (a Leaf, or an RLM node) has its start, started and completed events and
# the node's workflow tasks that record them, 4.5 events a child when 1,000 complete together, 8.2 when
# 200 trickle in at 500 ms and 8 at once (9 at most); an inline leaf its local activity's marker,
# 1.04-1.19 events. Bytes: the texts' copies (the prompt and the title, the first line the cell sends
# with it, as the batch has them; the answer at its worst) on top of what the rest takes, measured with
# 100 leaves of 250-character prompts and 220-character answers at 2.0 KB a child and 0.6 KB an inline
# leaf (3.0 and 1.3 KB in all; 7.4 and 4.6 KB when no character is ASCII).
CHILD_WORKFLOW = SubcallShape(events=9, fixed_bytes=3072, prompt_copies=2, answer_copies=2, memo_copies=2)
INLINE_LEAF = SubcallShape(events=2, fixed_bytes=1024, prompt_copies=1, answer_copies=2, memo_copies=0)
# A text's reference when it travels as a blob (its hash and the field names around it).
BLOB_NAME_BYTES = 90
# An answer rides inline up to INLINE_CHARS characters, six bytes each in Temporal's JSON (\uXXXX)
# when it is not ASCII; a longer one travels as a blob reference. A memo holds up to MEMO_CHARS.
ANSWER_BYTES = 6 * INLINE_CHARS + 2
MEMO_BYTES = 6 * MEMO_CHARS + 2


def encoded_bytes(text: Text) -> int:
    """A text's size as Temporal's JSON converter writes it."""
    return len(json.dumps(text.inline)) if text.inline is not None else BLOB_NAME_BYTES


def subcall_cost(shape: SubcallShape, prompts: Sequence[Text], titles: Sequence[str]) -> HistoryCost:
    """The most one sub-call of a batch adds to its node's history: the batch's mean, rounded up."""
    count = max(len(prompts), 1)
    prompt_bytes = sum(encoded_bytes(p) for p in prompts) * shape.prompt_copies
    title_bytes = sum(len(json.dumps(t)) for t in titles)  # in the Update
    size = (
        shape.fixed_bytes
        + math.ceil((prompt_bytes + title_bytes) / count)
        + shape.answer_copies * ANSWER_BYTES
        + shape.memo_copies * MEMO_BYTES
    )
    return HistoryCost(shape.events, size)


class HistoryRoom:
    """The sub-calls of one workflow run of a node, counted against its history's limits."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._pending = HistoryCost(0, 0)  # what accepted sub-calls still running will add
        self.full = False  # a batch was refused: the node continues as new at its next iteration

    def refusal(self, length: int, size: int, cost: HistoryCost, wanted: int) -> str | None:
        """None when ``wanted`` sub-calls of ``cost`` fit beside a history of ``length`` events and
        ``size`` bytes (then they count as pending until each has ``ended``), else why not."""
        events = length + self._pending.events + cost.events * wanted
        total = size + self._pending.size + cost.size * wanted
        if events <= self.max_events and total <= self.max_bytes:
            self._pending = HistoryCost(
                self._pending.events + cost.events * wanted, self._pending.size + cost.size * wanted
            )
            return None
        self.full = True
        return (
            f"this node's workflow run holds {length:,} history events ({size / 1e6:.1f} MB): {wanted} more "
            f"sub-calls would take it past the {self.max_events:,} events or {self.max_bytes / 1e6:.4g} MB "
            "it keeps under the Temporal server's limits; put several questions in each prompt (fewer, "
            "bigger chunks), or end this iteration: the node continues in a fresh run"
        )

    def ended(self, cost: HistoryCost) -> None:
        """One accepted sub-call ended: its events are in the history now."""
        self._pending = HistoryCost(self._pending.events - cost.events, self._pending.size - cost.size)
