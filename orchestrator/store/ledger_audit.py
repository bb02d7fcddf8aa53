"""Reading the budget ledger back: one reservation's state, and the sums an audit checks the totals against.

The ledger's totals on runs, sessions and tenants are kept in step with its entries by ``ledger``; these
recompute what the entries alone say.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from orchestrator.store.errors import NotFound
from orchestrator.store.ledger import closing_row, entry_row
from orchestrator.store.models import LedgerEntry, LedgerKind, Run, Tenant
from orchestrator.store.money import from_nanos


class ReservationState(StrEnum):
    OPEN = "open"
    SETTLED = "settled"  # closed at the actual cost
    RELEASED = "released"  # closed unspent


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    run_id: str
    tenant: str
    amount: Decimal
    key: str
    state: ReservationState
    actual: Decimal | None  # the settled cost


def get_reservation(session: Session, reservation_id: str) -> Reservation:
    opening = entry_row(session, reservation_id, 0)
    if opening is None:
        raise NotFound("reservation", reservation_id)
    tenant = session.scalar(select(Tenant.name).where(Tenant.id == opening.tenant_id)) or ""
    closing = closing_row(session, reservation_id)
    if closing is None:
        state = ReservationState.OPEN
    elif closing.kind == LedgerKind.SETTLE:
        state = ReservationState.SETTLED
    else:
        state = ReservationState.RELEASED
    actual = (
        from_nanos(closing.amount_nanos)
        if closing is not None and state == ReservationState.SETTLED
        else None
    )
    return Reservation(
        reservation_id=reservation_id,
        run_id=opening.run_id,
        tenant=tenant,
        amount=from_nanos(opening.amount_nanos),
        key=opening.idempotency_key or "",
        state=state,
        actual=actual,
    )


@dataclass(frozen=True)
class LedgerSums:
    spent: Decimal
    reserved: Decimal


def ledger_sums(
    session: Session, *, run_id: str | None = None, tenant: str | None = None, session_id: int | None = None
) -> LedgerSums:
    """Spent and reserved recomputed from the entries alone (for audits; totals must equal these)."""
    settle_sum = func.coalesce(
        func.sum(LedgerEntry.amount_nanos).filter(LedgerEntry.kind == LedgerKind.SETTLE.value), 0
    )
    held = func.coalesce(func.sum(LedgerEntry.amount_nanos).filter(LedgerEntry.phase == 0), 0)
    freed = func.coalesce(func.sum(LedgerEntry.released_nanos).filter(LedgerEntry.phase == 1), 0)
    stmt = select(settle_sum, held, freed)
    if run_id is not None:
        stmt = stmt.where(LedgerEntry.run_id == run_id)
    if session_id is not None:
        stmt = stmt.join(Run, Run.run_id == LedgerEntry.run_id).where(Run.session_id == session_id)
    if tenant is not None:
        stmt = stmt.join(Tenant, Tenant.id == LedgerEntry.tenant_id).where(Tenant.name == tenant)
    spent, held_n, freed_n = session.execute(stmt).one()
    return LedgerSums(spent=from_nanos(int(spent)), reserved=from_nanos(int(held_n) - int(freed_n)))
