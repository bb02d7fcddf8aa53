"""What a node's next prompt is, from the store, and whether it must be compacted first.

A node's conversation is rebuilt on every ``generate`` from its recorded steps: the ``generate`` and
``cell`` steps of earlier iterations, with iterations 1..k replaced by the summary of the latest
``compact`` step (``orchestrator.protocol.compaction``). Before the model call of iteration i, if that
prompt passes ``Limits.compact_at`` of the model's window, ``generate`` first records a ``compact``
step for iteration i (a metered call of the node's model), then rebuilds the prompt with it.

The threshold applies to the prompt alone, as in the reference implementation: what remains of the
window (15% by default) is the reply's room, and ``max_tokens`` is a cap most replies never reach;
an operator whose ``max_tokens`` is a large share of the window lowers ``compact_at``.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from orchestrator.activities import texts
from orchestrator.activities.cell_record import CellRecord
from orchestrator.llm.complete import count_prompt_tokens, input_window
from orchestrator.protocol.compaction import (
    NumberedTurn,
    Summary,
    compacted_conversation,
    summary_request,
    to_cover,
)
from orchestrator.protocol.prompts import CellReport, ChatMessage, ContextInfo, NodeLimits, Turn
from orchestrator.store import list_steps
from orchestrator.vocabulary import StepKind
from orchestrator.workflows.types import Limits, Text

log = structlog.get_logger(__name__)

_unknown_windows: set[str] = set()


def window_of(model: str, limits: Limits) -> int | None:
    """The model's context window in tokens: ``limits.context_window``, else litellm's model info, else
    None (no compaction; logged once per model and process)."""
    if limits.context_window > 0:
        return limits.context_window
    window = input_window(model)
    if window is not None:
        return window
    if model not in _unknown_windows:
        _unknown_windows.add(model)
        log.warning(
            "compaction.window_unknown",
            model=model,
            hint="no compaction for this model; give its window with --context-window TOKENS "
            "(Limits.context_window)",
        )
    return None


def _cell_report(data: object) -> CellReport:
    cell = CellRecord.from_data(data)  # type: ignore[arg-type]
    return CellReport(
        code=cell.code, stdout=cell.stdout, stderr=cell.stderr, error=cell.error, chars_cut=cell.chars_cut
    )


@dataclass(frozen=True)
class History:
    """A node's recorded iterations before ``iteration`` and the latest summary (compact step) of them."""

    turns: tuple[NumberedTurn, ...]
    summary: Summary | None
    compacted_here: bool  # the summary was recorded for this very iteration


def history(session: Session, node_id: str, iteration: int) -> History:
    replies: dict[int, str] = {}
    cells: dict[int, list[tuple[int, CellReport]]] = {}
    summary: Summary | None = None
    here = False
    for step in list_steps(session, node_id):
        if step.kind == StepKind.COMPACT and step.iteration <= iteration and step.output_ref:
            text = texts.unpack(session, Text(blob=step.output_ref))
            summary = Summary(last=int((step.data or {})["last"]), text=text)
            here = step.iteration == iteration
        if step.iteration >= iteration:
            continue
        if step.kind == StepKind.GENERATE and step.output_ref:
            replies[step.iteration] = texts.unpack(session, Text(blob=step.output_ref))
        elif step.kind == StepKind.CELL:
            cells.setdefault(step.iteration, []).append((step.index, _cell_report(step.data)))
    turns = tuple(
        NumberedTurn(i, Turn(reply=replies[i], cells=tuple(c for _, c in sorted(cells.get(i, [])))))
        for i in sorted(replies)
    )
    return History(turns=turns, summary=summary, compacted_here=here)


def messages_of(
    limits: NodeLimits, query: str, context: ContextInfo, past: History, *, forced_final: bool
) -> tuple[ChatMessage, ...]:
    return compacted_conversation(limits, query, context, past.summary, past.turns, forced_final=forced_final)


@dataclass(frozen=True)
class Plan:
    """A compaction to run before this iteration's reply: ``request`` summarises iterations 1..``last``."""

    request: tuple[ChatMessage, ...]
    last: int
    prompt_tokens: int  # of the prompt that passed the threshold


def plan(
    model: str,
    limits: Limits,
    node_limits: NodeLimits,
    query: str,
    context: ContextInfo,
    past: History,
    messages: tuple[ChatMessage, ...],
) -> Plan | None:
    """The compaction the next prompt (``messages``) needs first, or None."""
    if limits.compact_at <= 0 or past.compacted_here:
        return None
    window = window_of(model, limits)
    if window is None:
        return None
    tokens = count_prompt_tokens(model, messages)
    if tokens <= limits.compact_at * window:
        return None
    covered = to_cover(past.summary, past.turns)
    if not covered:
        log.info("compaction.nothing_to_cover", model=model, prompt_tokens=tokens, window=window)
        return None
    request = summary_request(node_limits, query, context, past.summary, covered)
    return Plan(request=request, last=covered[-1].number, prompt_tokens=tokens)
