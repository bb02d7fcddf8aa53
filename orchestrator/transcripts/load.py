"""Build a node's ``Transcript`` from the store alone (no Temporal): it works while the node runs, after
it ended, and for resumed or restarted runs (a restarted node finds its recorded steps under the same
keys, so its transcript reads on where it stopped).

Where each part comes from: the node row (status, totals, answer, error), the run row (query, context,
tenant), the node's ``generate`` steps (each iteration's reply) and ``cell`` steps (a ``CellRecord``
each), its children's rows and first steps (a leaf's ``leaf`` step holds its prompt and answer; an RLM
child's first ``generate`` step holds its prompt, the child's context, as its input when recorded). A
cell's sub-calls are the children numbered after the previous cell's ``children_after`` up to its own
(child ``run/0.3`` is the node's third sub-call). Cells the model wrote that have no record yet come from
parsing the iteration's reply.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.activities.cell_record import CellRecord
from orchestrator.activities.context import context_shape
from orchestrator.errors import RlmError
from orchestrator.protocol.parse import parse_reply
from orchestrator.protocol.prompts import child_query
from orchestrator.store.blobs import get_text
from orchestrator.store.errors import NotFound
from orchestrator.store.models import Node, Step
from orchestrator.store.steps import list_steps
from orchestrator.store.transcripts import NodeRow, child_nodes, children_first_steps, node_row, run_exists
from orchestrator.transcripts.clips import Clip, Cut
from orchestrator.transcripts.model import (
    CellView,
    Compaction,
    ContextView,
    Iteration,
    NodeView,
    Reply,
    SubcallView,
    Totals,
    Transcript,
    UnrecordedCell,
)
from orchestrator.vocabulary import FINAL_STATUSES, NodeKind, Status, StepKind, SubcallKind
from orchestrator.workflows.types import root_id

_ENDED = {
    Status.FAILED: "failed",
    Status.TIMED_OUT: "timed out",
    Status.ABORTED: "aborted",
    Status.CANCELLED: "cancelled",
}


class TranscriptError(RlmError):
    """A node that cannot be shown as asked (unknown id, another tenant's run)."""


def resolve_node(session: Session, ident: str, tenant: str | None = None) -> NodeRow:
    """The node ``ident`` names: a node id, or a run id meaning the run's root."""
    row = node_row(session, ident)
    if row is None and run_exists(session, ident):
        row = node_row(session, root_id(ident))
        if row is None:
            raise TranscriptError(f"run {ident!r} has no root node yet; try again once it has started")
    if row is None:
        raise TranscriptError(
            f"no node or run {ident!r} in this store; `rlm tree RUN` lists a run's node ids"
        )
    if tenant is not None and row.tenant != tenant:
        raise TranscriptError(
            f"{ident!r} is not a node of a run of tenant {tenant!r}; check the id and --tenant"
        )
    return row


def load_transcript(
    sessions: sessionmaker[Session], ident: str, *, cut: Cut | None = None, tenant: str | None = None
) -> Transcript:
    """The transcript of node ``ident`` (or of run ``ident``'s root), texts cut by ``cut``."""
    with sessions() as session:
        return build(session, resolve_node(session, ident, tenant), cut or Cut())


def build(session: Session, row: NodeRow, cut: Cut) -> Transcript:
    node, run = row.node, row.run
    steps = list_steps(session, node.node_id)
    replies = {s.iteration: s for s in steps if s.kind == StepKind.GENERATE}
    children = sorted(child_nodes(session, node.node_id), key=lambda c: _number(c.node_id))
    firsts = children_first_steps(session, node.node_id)
    subcalls = [(_number(c.node_id), _subcall(session, c, firsts.get(c.node_id), cut)) for c in children]
    iterations: tuple[Iteration, ...]
    context = None
    if node.kind == NodeKind.LEAF:
        leaf = next((s for s in steps if s.kind == StepKind.LEAF), None)
        query = _text(session, leaf.input_ref if leaf else None)
        iterations = (
            () if leaf is None else (Iteration(number=1, reply=_reply(session, leaf, cut), cells=()),)
        )
    else:
        if node.kind == NodeKind.ROOT:
            query = _text(session, run.query_ref)
            suffix = str(run.config.get("context_suffix", ".txt"))
            context = _context(_text(session, run.context_ref), suffix)
        else:
            first = replies.get(1)
            prompt = _text(session, first.input_ref if first else None)
            query = None if prompt is None else child_query(prompt)
            context = _context(prompt, ".txt")
        cells = [s for s in steps if s.kind == StepKind.CELL]
        compactions = {s.iteration: _compaction(session, s, cut) for s in steps if s.kind == StepKind.COMPACT}
        iterations = _iterations(session, node, replies, cells, subcalls, cut, compactions)
    return Transcript(
        node=NodeView(
            node_id=node.node_id,
            run_id=node.run_id,
            tenant=row.tenant,
            parent_id=node.parent_id,
            depth=node.depth,
            kind=node.kind,
            status=node.status,
            model=next((s.model for s in steps if s.model), None),
            created_at=node.created_at,
            finished_at=node.finished_at,
            duration_ms=_duration(node),
            cost=node.cost,
            prompt_tokens=node.prompt_tokens,
            completion_tokens=node.completion_tokens,
            error=node.error,
            ended_because=_ended_because(node, replies),
        ),
        query=cut.maybe(query),
        context=context,
        iterations=iterations,
        answer=cut.maybe(_text(session, node.answer_ref)),
        totals=Totals(
            iterations=len(iterations),
            cells=sum(1 for s in steps if s.kind == StepKind.CELL),
            subcalls=len(children),
            cost=node.cost,
            children_cost=sum((c.cost for c in children), Decimal(0)),
            prompt_tokens=node.prompt_tokens,
            completion_tokens=node.completion_tokens,
        ),
    )


def _iterations(
    session: Session,
    node: Node,
    replies: dict[int, Step],
    cells: list[Step],
    subcalls: list[tuple[int, SubcallView]],
    cut: Cut,
    compactions: dict[int, Compaction],
) -> tuple[Iteration, ...]:
    recorded: dict[int, dict[int, Step]] = {}
    for cell in cells:
        recorded.setdefault(cell.iteration, {})[cell.index] = cell
    numbers = sorted(set(replies) | set(recorded) | set(compactions))
    queue = list(subcalls)  # by child number: each cell takes those up to its ``children_after``
    out: list[Iteration] = []
    for number in numbers:
        reply = replies.get(number)
        text = _text(session, reply.output_ref if reply else None)
        forced = bool(reply is not None and (reply.data or {}).get("forced_final"))
        codes = [] if text is None or forced else [block.code for block in parse_reply(text).blocks]
        mine = recorded.get(number, {})
        views: list[CellView] = []
        for index in sorted(set(mine) | set(range(len(codes)))):
            step = mine.get(index)
            if step is not None:
                record = CellRecord.from_data(step.data)
                taken = [view for n, view in queue if n <= record.children_after]
                queue = [(n, view) for n, view in queue if n > record.children_after]
                views.append(_cell(index, record, step.duration_ms, taken, cut))
                continue
            status = _unrecorded_status(node, last=number == numbers[-1], first=not _has_unrecorded(views))
            taken = [view for _, view in queue] if status != UnrecordedCell.NOT_RUN else []
            queue = [] if taken else queue
            views.append(_unrun(index, codes[index], status, taken, cut))
        out.append(
            Iteration(
                number=number,
                reply=_reply(session, reply, cut),
                cells=tuple(views),
                compaction=compactions.get(number),
            )
        )
    if queue and out and out[-1].cells:
        # Children no cell accounts for are shown under the last cell rather than dropped.
        last = out[-1].cells[-1]
        extra = tuple(view for _, view in queue)
        cells_ = (*out[-1].cells[:-1], dataclasses.replace(last, subcalls=last.subcalls + extra))
        out[-1] = dataclasses.replace(out[-1], cells=cells_)
    return tuple(out)


_UNRECORDED = frozenset(UnrecordedCell)


def _has_unrecorded(views: list[CellView]) -> bool:
    return any(v.status in _UNRECORDED for v in views)


def _unrecorded_status(node: Node, *, last: bool, first: bool) -> str:
    """A cell without a record: the node is at it, gave up on it, or never got to it."""
    if not (last and first) or node.status == Status.COMPLETED:
        return UnrecordedCell.NOT_RUN
    return UnrecordedCell.UNFINISHED if node.status in FINAL_STATUSES else UnrecordedCell.RUNNING


def _cell(
    index: int, record: CellRecord, duration_ms: int | None, subcalls: list[SubcallView], cut: Cut
) -> CellView:
    return CellView(
        index=index,
        code=cut.clip(record.code),
        stdout=cut.clip(record.stdout),
        stderr=cut.clip(record.stderr),
        error=cut.maybe(record.error),
        status=record.status,
        duration_ms=duration_ms,
        chars_cut=record.chars_cut,
        answer=cut.maybe(record.answer),
        ready=record.ready,
        subcalls=tuple(subcalls),
    )


def _unrun(index: int, code: str, status: str, subcalls: list[SubcallView], cut: Cut) -> CellView:
    empty = Clip(text="", chars=0)
    return CellView(
        index=index, code=cut.clip(code), stdout=empty, stderr=empty, error=None, status=status,
        duration_ms=None, chars_cut=0, answer=None, ready=False, subcalls=tuple(subcalls),
    )  # fmt: skip


def _reply(session: Session, step: Step | None, cut: Cut) -> Reply | None:
    if step is None:
        return None
    return Reply(
        text=cut.clip(_text(session, step.output_ref) or ""),
        model=step.model,
        prompt_tokens=step.prompt_tokens,
        completion_tokens=step.completion_tokens,
        cost=step.cost,
        duration_ms=step.duration_ms,
        forced_final=bool((step.data or {}).get("forced_final")),
    )


def _compaction(session: Session, step: Step, cut: Cut) -> Compaction:
    data = step.data or {}
    return Compaction(
        first=int(data.get("first", 1)),
        last=int(data.get("last", 0)),
        summary=cut.clip(_text(session, step.output_ref) or ""),
        model=step.model,
        prompt_tokens=step.prompt_tokens,
        completion_tokens=step.completion_tokens,
        cost=step.cost,
        duration_ms=step.duration_ms,
    )


def _subcall(session: Session, child: Node, first: Step | None, cut: Cut) -> SubcallView:
    prompt = _text(session, first.input_ref if first is not None else None)
    return SubcallView(
        node_id=child.node_id,
        kind=SubcallKind.LLM if child.kind == NodeKind.LEAF else SubcallKind.RLM,
        prompt=cut.previewed(prompt),
        answer=cut.previewed(_text(session, child.answer_ref)),
        status=child.status,
        cost=child.cost,
        error=child.error,
        duration_ms=_duration(child),
    )


def _context(text: str | None, suffix: str) -> ContextView | None:
    """The context's shape as the model is told of it (``orchestrator.activities.context``)."""
    if text is None:
        return None
    info = context_shape(text, suffix)
    return ContextView(
        kind=info.kind, chars=info.total_chars, documents=info.chunk_lengths, suffix=suffix, names=info.names
    )


def _ended_because(node: Node, replies: dict[int, Step]) -> str | None:
    if node.status == Status.COMPLETED:
        last = replies[max(replies)] if replies else None
        if last is not None and (last.data or {}).get("forced_final"):
            return "answered at the forced final request"
        return "answered"
    if node.status not in FINAL_STATUSES:
        return None
    what = _ENDED.get(Status(node.status), node.status)
    return f"{what}: {node.error}" if node.error else what


def _duration(node: Node) -> int:
    end = node.finished_at or datetime.now(UTC)
    return max(0, round((end - node.created_at).total_seconds() * 1000))


def _number(node_id: str) -> int:
    """The child's number among its parent's sub-calls: ``run/0.3`` is the 3rd."""
    tail = node_id.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _text(session: Session, ref: str | None) -> str | None:
    """A stored text; None when there is none or ``rlm prune`` removed it."""
    if ref is None:
        return None
    try:
        return get_text(session, ref)
    except NotFound:
        return None
