"""A run's progress now, read from the store for the live view of ``rlm run`` / ``rlm wait`` / ``rlm watch``.

``ProgressReader.read`` costs three aggregate statements (``orchestrator.store.progress``) and, once per
iteration of a node in view, the model's reply (to know how many cells it runs); a tree of 1,000 nodes
costs what a tree of 3 does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.protocol.parse import parse_reply
from orchestrator.store.blobs import get_text
from orchestrator.store.models import utcnow
from orchestrator.store.money import from_nanos
from orchestrator.store.progress import FocusNode, focus_nodes, node_counts, run_figures
from orchestrator.store.steps import find_step
from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES, NodeKind, Status, StepKind

_RUNNING = frozenset({Status.PENDING, Status.RUNNING})


@dataclass(frozen=True)
class Doing:
    """What one node is doing now, in words: ``label`` names it (``root`` or its id); ``paused``: it
    waits for an operator."""

    label: str
    text: str
    paused: bool = False


@dataclass(frozen=True)
class ProgressSnapshot:
    run_id: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    nodes_running: int  # pending or running
    nodes_completed: int
    nodes_failed: int  # ended without an answer: failed, timed out, aborted, cancelled
    nodes_paused: int
    subcalls_started: int
    subcalls_finished: int
    spent: Decimal
    reserved: Decimal
    budget: Decimal | None
    tenant: str
    tenant_spent: Decimal
    tenant_reserved: Decimal
    tenant_budget: Decimal
    doing: tuple[Doing, ...]

    def elapsed_s(self, now: datetime | None = None) -> float:
        end = self.finished_at or now or utcnow()
        return max(0.0, (end - self.started_at).total_seconds())


class ProgressReader:
    """Reads a run's ``ProgressSnapshot``; remembers each reply's cell count, which never changes."""

    def __init__(self, sessions: sessionmaker[Session], run_id: str) -> None:
        self.sessions = sessions
        self.run_id = run_id
        self._cells: dict[str, int] = {}

    def read(self) -> ProgressSnapshot | None:
        """The run's progress now, or None when no run has that id."""
        with self.sessions() as session:
            run = run_figures(session, self.run_id)
            if run is None:
                return None
            counts = node_counts(session, self.run_id)
            doing = tuple(
                Doing(_label(n), self._doing(session, n), n.status in PAUSED_STATUSES)
                for n in focus_nodes(session, self.run_id)
            )
        by_status: dict[str, int] = {}
        for (status, _), count in counts.items():
            by_status[status] = by_status.get(status, 0) + count
        subcalls = {status: count for (status, sub), count in counts.items() if sub}
        return ProgressSnapshot(
            run_id=self.run_id,
            status=run.status,
            started_at=run.created_at,
            finished_at=run.finished_at,
            nodes_running=sum(by_status.get(s, 0) for s in _RUNNING),
            nodes_completed=by_status.get(Status.COMPLETED, 0),
            nodes_failed=sum(by_status.get(s, 0) for s in FINAL_STATUSES if s != Status.COMPLETED),
            nodes_paused=by_status.get(Status.PAUSED, 0) + by_status.get(Status.PAUSED_BUDGET, 0),
            subcalls_started=sum(subcalls.values()),
            subcalls_finished=sum(subcalls.get(s, 0) for s in FINAL_STATUSES),
            spent=from_nanos(run.spent_nanos),
            reserved=from_nanos(run.reserved_nanos),
            budget=None if run.budget_nanos is None else from_nanos(run.budget_nanos),
            tenant=run.tenant,
            tenant_spent=from_nanos(run.tenant_spent_nanos),
            tenant_reserved=from_nanos(run.tenant_reserved_nanos),
            tenant_budget=from_nanos(run.tenant_budget_nanos),
            doing=doing,
        )

    def _doing(self, session: Session, node: FocusNode) -> str:
        if node.status == Status.PAUSED_BUDGET:
            return "paused: budget" + (f" ({_first_line(node.error)})" if node.error else "")
        if node.status == Status.PAUSED:
            return "paused by an operator"
        if node.status in FINAL_STATUSES:
            return str(node.status)
        if node.kind == NodeKind.LEAF:
            return "one completion"
        now = self._step_text(session, node)
        if node.open_children:
            now += f", waiting on {node.open_children} sub-call{'s' if node.open_children != 1 else ''}"
        return now

    def _step_text(self, session: Session, node: FocusNode) -> str:
        """Where the node's iteration loop is: steps are written when they end, so the step after the
        latest one is what runs now (the next cell of the reply, else the next model call)."""
        iteration = node.step_iteration or 0
        if node.step_kind not in (StepKind.GENERATE, StepKind.CELL):
            return f"iteration {iteration + 1}: waiting for the model"
        cells = self._cell_count(session, node)
        done = 0 if node.step_kind == StepKind.GENERATE else (node.step_index or 0) + 1
        if done < cells:
            return f"iteration {iteration}: running cell {done + 1} of {cells}"
        return f"iteration {iteration + 1}: waiting for the model"

    def _cell_count(self, session: Session, node: FocusNode) -> int:
        key = f"{node.node_id}#{node.step_iteration}"
        if key not in self._cells:
            ref = node.step_output_ref
            gen = ref if node.step_kind == StepKind.GENERATE else _reply_ref(session, node)
            self._cells[key] = len(parse_reply(get_text(session, gen)).blocks) if gen else 0
        return self._cells[key]


def _reply_ref(session: Session, node: FocusNode) -> str | None:
    step = find_step(session, node.node_id, node.step_iteration or 0, StepKind.GENERATE, 0)
    return None if step is None else step.output_ref


def _label(node: FocusNode) -> str:
    return "root" if node.is_root else node.node_id


def _first_line(text: str, limit: int = 120) -> str:
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"
