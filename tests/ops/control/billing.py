"""What the ledger says about a run: every settled call has its recorded step, nothing twice."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import from_nanos, get_run
from orchestrator.store.models import LedgerEntry, Node, Step


def settled_calls(sessions: sessionmaker[Session], run_id: str) -> int:
    with sessions() as s:
        stmt = select(func.count()).where(LedgerEntry.run_id == run_id, LedgerEntry.kind == "settle")
        return int(s.execute(stmt).scalar_one())


def billed_steps(sessions: sessionmaker[Session], run_id: str) -> tuple[int, Decimal]:
    """(model-call steps of the run, the sum of their costs)."""
    with sessions() as s:
        stmt = (
            select(func.count(), func.coalesce(func.sum(Step.cost_nanos), 0))
            .join(Node, Node.node_id == Step.node_id)
            .where(Node.run_id == run_id, Step.kind.in_(("generate", "leaf", "compact")))
        )
        count, nanos = s.execute(stmt).one()
        return int(count), from_nanos(int(nanos))


def assert_billed_once(sessions: sessionmaker[Session], run_id: str) -> Decimal:
    """Each model call settled exactly once and the run's spend is exactly the sum of its calls."""
    calls, total = billed_steps(sessions, run_id)
    assert settled_calls(sessions, run_id) == calls
    with sessions() as s:
        spent = get_run(s, run_id).spent
    assert spent == total
    return spent
