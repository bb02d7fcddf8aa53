"""The budget ledger: reserve before an LLM call, settle (or release) after it.

Transactions. Each operation is atomic on its own. Given a ``sessionmaker`` it runs in its own
transaction and commits; given a ``Session`` it leaves the commit to the caller. ``reserve`` then runs
inside a SAVEPOINT (a refused reservation rolls back only its own writes); ``settle`` and ``release``
need none: they refuse before writing anything.

Locking. ``reserve`` raises the totals with one conditional UPDATE per budget,
``SET reserved = reserved + a WHERE spent + reserved + a <= limit``: the row lock taken by the UPDATE
makes check-and-add a single step, so concurrent reservations can never jointly overshoot. On
PostgreSQL (READ COMMITTED) a blocked UPDATE re-evaluates its WHERE against the row as committed by
the transaction it waited for. On SQLite every transaction starts with BEGIN IMMEDIATE (see
``engine.py``), so ledger transactions run one at a time. Locks are always taken in the same order
-- the ledger row's unique key, then the run's session (a session's turn), then the tenant, then the
run -- so two ledger transactions cannot deadlock. The session comes first because its budget is the
one most likely to refuse: a refusal after an earlier hold rolls back an UPDATE inside the SAVEPOINT,
and PostgreSQL 15 can then fail a concurrent UPDATE of that row with "new multixact has more than one
updating member" (seen with 200 concurrent reservations against one session's budget).

Append-only. Entries are only ever inserted (the database refuses UPDATE and DELETE on them); the
``spent``/``reserved`` totals on runs, sessions and tenants change in the same transaction as the entry that
explains the change, so they always equal the sums over the ledger (``ledger_audit.ledger_sums``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

import structlog
from sqlalchemy import Row, Table, bindparam, exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from orchestrator.store import validate
from orchestrator.store._sql import insert_ignore, rowcount, run
from orchestrator.store.errors import BudgetExhausted, InvalidValue, NotFound, ReservationClosed
from orchestrator.store.models import LedgerEntry, LedgerKind, RlmSession, Run, Tenant, utcnow
from orchestrator.store.money import from_nanos

log = structlog.get_logger(__name__)

SessionSource = Session | sessionmaker[Session]
T = TypeVar("T")

KEY_MAX = 255
# Room kept in a key for its renewals' suffix (``~N``).
RENEWAL_CHARS = 8

# Every model call runs these: built once and executed with parameters, they skip SQLAlchemy's
# per-call statement construction (see _sql.py).
_ENTRIES = cast(Table, LedgerEntry.__table__)
_TENANTS = cast(Table, Tenant.__table__)
_RUNS = cast(Table, Run.__table__)
_SESSIONS = cast(Table, RlmSession.__table__)
_BY_KEY = select(_ENTRIES.c.reservation_id, _ENTRIES.c.run_id).where(
    _ENTRIES.c.idempotency_key == bindparam("key")
)
_RUN_TENANT = (
    select(_RUNS.c.tenant_id, _RUNS.c.session_id, _TENANTS.c.name)
    .join(_TENANTS, _TENANTS.c.id == _RUNS.c.tenant_id)
    .where(_RUNS.c.run_id == bindparam("run_id"))
)
_TENANT_HOLD = (
    update(_TENANTS)
    .where(
        _TENANTS.c.id == bindparam("b_tenant"),
        _TENANTS.c.spent_nanos + _TENANTS.c.reserved_nanos + bindparam("nanos") <= _TENANTS.c.budget_nanos,
    )
    .values(reserved_nanos=_TENANTS.c.reserved_nanos + bindparam("nanos"))
)
_SESSION_HOLD = (
    update(_SESSIONS)
    .where(
        _SESSIONS.c.id == bindparam("b_session"),
        or_(
            _SESSIONS.c.budget_nanos.is_(None),
            _SESSIONS.c.spent_nanos + _SESSIONS.c.reserved_nanos + bindparam("nanos")
            <= _SESSIONS.c.budget_nanos,
        ),
    )
    .values(reserved_nanos=_SESSIONS.c.reserved_nanos + bindparam("nanos"))
)
_RUN_HOLD = (
    update(_RUNS)
    .where(
        _RUNS.c.run_id == bindparam("b_run"),
        or_(
            _RUNS.c.budget_nanos.is_(None),
            _RUNS.c.spent_nanos + _RUNS.c.reserved_nanos + bindparam("nanos") <= _RUNS.c.budget_nanos,
        ),
    )
    .values(reserved_nanos=_RUNS.c.reserved_nanos + bindparam("nanos"))
)
_ENTRY = select(
    _ENTRIES.c.kind,
    _ENTRIES.c.run_id,
    _ENTRIES.c.tenant_id,
    _ENTRIES.c.amount_nanos,
    _ENTRIES.c.idempotency_key,
).where(_ENTRIES.c.reservation_id == bindparam("reservation_id"), _ENTRIES.c.phase == bindparam("phase"))
# kind, run_id, tenant_id, amount_nanos, idempotency_key
_EntryRow = Row[Any]
_TENANT_CLOSE = (
    update(_TENANTS)
    .where(_TENANTS.c.id == bindparam("b_tenant"))
    .values(
        reserved_nanos=_TENANTS.c.reserved_nanos - bindparam("held"),
        spent_nanos=_TENANTS.c.spent_nanos + bindparam("nanos"),
    )
)
# The opening entry with its run's session (a run's session never changes): reading the run row
# takes no lock, so the lock order stays session, tenant, run, and a run without a session (most of
# them) costs no session statement when it closes.
_OPENING = (
    select(_ENTRIES.c.run_id, _ENTRIES.c.tenant_id, _ENTRIES.c.amount_nanos, _RUNS.c.session_id)
    .select_from(_ENTRIES.outerjoin(_RUNS, _RUNS.c.run_id == _ENTRIES.c.run_id))
    .where(_ENTRIES.c.reservation_id == bindparam("reservation_id"), _ENTRIES.c.phase == 0)
)
_SESSION_CLOSE = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("b_session"))
    .values(
        reserved_nanos=_SESSIONS.c.reserved_nanos - bindparam("held"),
        spent_nanos=_SESSIONS.c.spent_nanos + bindparam("nanos"),
    )
)
_RUN_CLOSE = (
    update(_RUNS)
    .where(_RUNS.c.run_id == bindparam("b_run"))
    .values(
        reserved_nanos=_RUNS.c.reserved_nanos - bindparam("held"),
        spent_nanos=_RUNS.c.spent_nanos + bindparam("nanos"),
    )
)


def _atomic(source: SessionSource, operation: Callable[[Session], T]) -> T:
    if isinstance(source, Session):
        with source.begin_nested():
            return operation(source)
    return _in_transaction(source, operation)


def _in_transaction(source: SessionSource, operation: Callable[[Session], T]) -> T:
    """For operations that write nothing before they can refuse: the caller's transaction is enough."""
    if isinstance(source, Session):
        return operation(source)
    with source() as session, session.begin():
        return operation(session)


def checked_amount(amount: Decimal) -> int:
    """``amount`` in nanodollars, if the ledger can hold it; else ``InvalidValue`` saying why."""
    return validate.nanos(amount, "reservation amount")


def reserve(
    source: SessionSource, *, run_id: str, tenant: str, amount: Decimal, key: str, renew: bool = False
) -> str:
    """Hold ``amount`` USD against the run's, its session's (a turn) and the tenant's budget; returns the
    reservation id.

    ``key`` makes it idempotent: the same key returns the same reservation (open, settled or
    released) without holding money twice. ``renew``: a closed reservation of the key belongs to a
    call that is over (a model call reserves again only when no answer of it was recorded), so this
    is a new call: it reserves under the key's next renewal (``KEY~2``, ``KEY~3``, ...) instead.
    Raises ``BudgetExhausted`` naming the budget that lacks head-room; nothing is written then, so a
    retry after a budget raise can succeed.
    """
    nanos = checked_amount(amount)
    validate.text_id(key, "idempotency key", KEY_MAX - RENEWAL_CHARS if renew else KEY_MAX)
    reservation_id = _atomic(source, lambda s: _reserve(s, run_id, tenant, nanos, key, renew))
    log.debug(
        "ledger.reserved", run_id=run_id, tenant=tenant, amount=str(amount), reservation_id=reservation_id
    )
    return reservation_id


def _existing_for_key(session: Session, key: str, run_id: str) -> str | None:
    row = run(session, _BY_KEY, {"key": key}).one_or_none()
    if row is None:
        return None
    if row.run_id != run_id:
        raise InvalidValue(
            f"idempotency key {key!r} was used by run {row.run_id!r}; keys must be unique per call"
        )
    return str(row.reservation_id)


def _renewal(key: str) -> str:
    base, sep, count = key.rpartition("~")
    return f"{base}~{int(count) + 1}" if sep and count.isdigit() else f"{key}~2"


def _reserve(session: Session, run_id: str, tenant: str, nanos: int, key: str, renew: bool) -> str:
    row = run(session, _RUN_TENANT, {"run_id": run_id}).one_or_none()
    if row is None:
        raise NotFound("run", run_id)
    if row.name != tenant:
        raise InvalidValue(f"run {run_id!r} belongs to tenant {row.name!r}, not {tenant!r}")
    reservation_id = uuid.uuid4().hex
    entry = {
        "reservation_id": reservation_id,
        "phase": 0,
        "kind": LedgerKind.RESERVE.value,
        "run_id": run_id,
        "tenant_id": row.tenant_id,
        "amount_nanos": nanos,
        "released_nanos": 0,
        "idempotency_key": key,
        "created_at": utcnow(),
    }
    if not insert_ignore(session, LedgerEntry, entry, ["idempotency_key"]):
        # The key's reservation exists: a retried call, or a concurrent one that committed first.
        winner = _existing_for_key(session, key, run_id)
        if winner is None:
            raise NotFound("reservation for key", key)
        if renew and closing_row(session, winner) is not None:
            return _reserve(session, run_id, tenant, nanos, _renewal(key), renew)
        return winner

    if row.session_id is not None:
        _hold_session(session, row.session_id, nanos)
    tenant_ok = run(session, _TENANT_HOLD, {"b_tenant": row.tenant_id, "nanos": nanos})
    if rowcount(tenant_ok) != 1:
        t = session.execute(
            select(Tenant.budget_nanos, Tenant.spent_nanos, Tenant.reserved_nanos).where(
                Tenant.id == row.tenant_id
            )
        ).one()
        raise BudgetExhausted(
            scope="tenant",
            name=tenant,
            limit=from_nanos(t.budget_nanos),
            spent=from_nanos(t.spent_nanos),
            reserved=from_nanos(t.reserved_nanos),
            requested=from_nanos(nanos),
        )
    run_ok = run(session, _RUN_HOLD, {"b_run": run_id, "nanos": nanos})
    if rowcount(run_ok) != 1:
        r = session.execute(
            select(Run.budget_nanos, Run.spent_nanos, Run.reserved_nanos).where(Run.run_id == run_id)
        ).one()
        raise BudgetExhausted(
            scope="run",
            name=run_id,
            limit=from_nanos(r.budget_nanos or 0),
            spent=from_nanos(r.spent_nanos),
            reserved=from_nanos(r.reserved_nanos),
            requested=from_nanos(nanos),
        )
    return reservation_id


def _hold_session(session: Session, session_id: int, nanos: int) -> None:
    if rowcount(run(session, _SESSION_HOLD, {"b_session": session_id, "nanos": nanos})) == 1:
        return
    s = session.execute(
        select(
            RlmSession.name, RlmSession.budget_nanos, RlmSession.spent_nanos, RlmSession.reserved_nanos
        ).where(RlmSession.id == session_id)
    ).one()
    raise BudgetExhausted(
        scope="session",
        name=s.name,
        limit=from_nanos(s.budget_nanos or 0),
        spent=from_nanos(s.spent_nanos),
        reserved=from_nanos(s.reserved_nanos),
        requested=from_nanos(nanos),
    )


def settle(source: SessionSource, reservation_id: str, actual: Decimal) -> Decimal:
    """Record the call's real cost and free its reservation; returns the cost recorded.

    Idempotent by reservation id: a second settle changes nothing and returns the first cost.
    A cost above the reservation is recorded in full (it may take spend past the limit).
    Raises ``ReservationClosed`` if the reservation was released: its call was declared not to happen.
    """
    nanos = validate.nanos(actual, "actual cost")
    recorded = _in_transaction(source, lambda s: _close(s, reservation_id, LedgerKind.SETTLE, nanos))
    log.debug("ledger.settled", reservation_id=reservation_id, actual=str(recorded))
    return recorded


def release(source: SessionSource, reservation_id: str) -> None:
    """Free a reservation whose call never happened. A no-op if it was settled or released already."""
    _in_transaction(source, lambda s: _close(s, reservation_id, LedgerKind.RELEASE, 0))
    log.debug("ledger.released", reservation_id=reservation_id)


def release_open(source: SessionSource, *, run_id: str, key_prefix: str) -> int:
    """Release the run's open reservations whose key starts with ``key_prefix``; returns how many.

    A node that ended holds nothing: a call of it that was waiting for a retry when the node ended
    (its deadline, an abort) kept its reservation for that retry, and no retry will come."""

    def go(session: Session) -> int:
        opening, closing = aliased(LedgerEntry), aliased(LedgerEntry)
        still_open = session.scalars(
            select(opening.reservation_id).where(
                opening.run_id == run_id,
                opening.phase == 0,
                opening.idempotency_key.startswith(key_prefix, autoescape=True),
                ~exists().where(closing.reservation_id == opening.reservation_id, closing.phase == 1),
            )
        ).all()
        for reservation_id in still_open:
            _close(session, reservation_id, LedgerKind.RELEASE, 0)
        return len(still_open)

    released = _in_transaction(source, go)
    if released:
        log.info("ledger.released_open", run_id=run_id, key_prefix=key_prefix, count=released)
    return released


def entry_row(session: Session, reservation_id: str, phase: int) -> _EntryRow | None:
    """The opening (phase 0) or closing (phase 1) entry of a reservation."""
    return run(session, _ENTRY, {"reservation_id": reservation_id, "phase": phase}).one_or_none()


def closing_row(session: Session, reservation_id: str) -> _EntryRow | None:
    return entry_row(session, reservation_id, 1)


def _already_closed(closing: _EntryRow, kind: LedgerKind, reservation_id: str) -> Decimal:
    if kind is LedgerKind.SETTLE and closing.kind == LedgerKind.RELEASE.value:
        raise ReservationClosed(reservation_id, "release")
    return from_nanos(closing.amount_nanos)


def _close(session: Session, reservation_id: str, kind: LedgerKind, nanos: int) -> Decimal:
    opening = run(session, _OPENING, {"reservation_id": reservation_id}).one_or_none()
    if opening is None:
        raise NotFound("reservation", reservation_id)
    # The closing entry's unique (reservation, phase) decides: a second close finds the first.
    entry = {
        "reservation_id": reservation_id,
        "phase": 1,
        "kind": kind.value,
        "run_id": opening.run_id,
        "tenant_id": opening.tenant_id,
        "amount_nanos": nanos,
        "released_nanos": opening.amount_nanos,
        "idempotency_key": None,
        "created_at": utcnow(),
    }
    if not insert_ignore(session, LedgerEntry, entry, ["reservation_id", "phase"]):
        closing = closing_row(session, reservation_id)
        if closing is None:
            raise NotFound("closing entry of reservation", reservation_id)
        return _already_closed(closing, kind, reservation_id)
    held = opening.amount_nanos
    if opening.session_id is not None:
        run(session, _SESSION_CLOSE, {"b_session": opening.session_id, "held": held, "nanos": nanos})
    run(session, _TENANT_CLOSE, {"b_tenant": opening.tenant_id, "held": held, "nanos": nanos})
    run(session, _RUN_CLOSE, {"b_run": opening.run_id, "held": held, "nanos": nanos})
    return from_nanos(nanos)
