"""What the store says about a run: its summary (``rlm status``, the line after ``rlm run``), its tree of
nodes (``rlm tree``), and the newest runs (``rlm runs``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import get_run, get_text, list_nodes, list_runs, run_usage, text_head
from orchestrator.store.models import Run


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
    answer: str | None
    error: str | None
    cost: Decimal
    reserved: Decimal  # held by calls in flight; 0 once every call has settled
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
        wall = _wall_s(run)
        return RunSummary(
            run_id=run_id,
            status=run.status,
            answer=answer,
            error=run.error,
            cost=usage.spent,
            reserved=usage.reserved,
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
            preview = _preview(session, node.answer_ref, preview_chars) if node.answer_ref else None
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


# A preview reads at most this much of a text's start (or 4 bytes a character shown, if more), never the
# whole of a query or an answer that may be megabytes.
PREVIEW_BYTES = 4096


@dataclass(frozen=True)
class RunListing:
    run_id: str
    tenant: str
    status: str
    cost: Decimal
    started_at: datetime
    wall_s: float | None  # None while it runs
    query_preview: str | None
    error: str | None


def recent_runs(
    sessions: sessionmaker[Session],
    *,
    tenant: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    limit: int = 20,
    preview_chars: int = 60,
) -> list[RunListing]:
    """The newest runs first (``rlm runs``); the filters as ``orchestrator.store.list_runs`` takes them."""
    listed: list[RunListing] = []
    with sessions() as session:
        for run, tenant_name in list_runs(session, tenant=tenant, status=status, since=since, limit=limit):
            # One line: a query's line breaks would break the table's row.
            query = _preview(session, run.query_ref, preview_chars, one_line=True) if run.query_ref else None
            listed.append(
                RunListing(
                    run_id=run.run_id,
                    tenant=tenant_name,
                    status=run.status,
                    cost=run.spent,
                    started_at=run.created_at,
                    wall_s=_wall_s(run),
                    query_preview=query,
                    error=run.error,
                )
            )
    return listed


def _wall_s(run: Run) -> float | None:
    """From the run's row to its end; None while it runs."""
    return (run.finished_at - run.created_at).total_seconds() if run.finished_at else None


def _preview(session: Session, ref: str, chars: int, one_line: bool = False) -> str:
    """The start of a stored text, clipped to ``chars``; ``one_line``: its whitespace folded first."""
    text = text_head(session, ref, max(chars * 4, PREVIEW_BYTES))  # UTF-8: up to 4 bytes a character
    return _clip(" ".join(text.split()) if one_line else text, chars)


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"
