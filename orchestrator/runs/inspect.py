"""What the store says about a run: its summary (``rlm status``, the line after ``rlm run``) and its
tree of nodes (``rlm tree``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import get_run, get_text, list_nodes, run_usage


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
    answer: str | None
    error: str | None
    cost: Decimal
    prompt_tokens: int
    completion_tokens: int
    nodes: int
    wall_s: float | None


def run_summary(sessions: sessionmaker[Session], run_id: str) -> RunSummary:
    with sessions() as session:
        run = get_run(session, run_id)
        nodes = list_nodes(session, run_id)
        root = next((n for n in nodes if n.parent_id is None), None)
        answer = get_text(session, root.answer_ref) if root is not None and root.answer_ref else None
        usage = run_usage(session, run_id)
        wall = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
        return RunSummary(
            run_id=run_id,
            status=run.status,
            answer=answer,
            error=run.error,
            cost=usage.spent,
            prompt_tokens=sum(n.prompt_tokens for n in nodes),
            completion_tokens=sum(n.completion_tokens for n in nodes),
            nodes=len(nodes),
            wall_s=wall,
        )


@dataclass(frozen=True)
class TreeRow:
    node_id: str
    parent_id: str | None
    depth: int
    kind: str
    status: str
    iterations: int
    cost: Decimal
    answer_preview: str | None
    error: str | None


def run_tree(sessions: sessionmaker[Session], run_id: str, preview_chars: int = 60) -> list[TreeRow]:
    rows: list[TreeRow] = []
    with sessions() as session:
        get_run(session, run_id)
        for node in list_nodes(session, run_id):
            preview = None
            if node.answer_ref:
                text = get_text(session, node.answer_ref)
                preview = text if len(text) <= preview_chars else text[: preview_chars - 1] + "…"
            rows.append(
                TreeRow(
                    node_id=node.node_id,
                    parent_id=node.parent_id,
                    depth=node.depth,
                    kind=node.kind,
                    status=node.status,
                    iterations=node.iterations,
                    cost=node.cost,
                    answer_preview=preview,
                    error=node.error,
                )
            )
    return sorted(rows, key=lambda r: tree_key(r.node_id))


def tree_key(node_id: str) -> tuple[int, ...]:
    """Sort ``run/0.10`` after ``run/0.9``: numeric path order."""
    path = node_id.rsplit("/", 1)[-1]
    return tuple(int(p) for p in path.split(".") if p.isdigit())
