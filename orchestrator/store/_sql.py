"""Dialect helpers shared by the repository modules (PostgreSQL and SQLite spell upserts alike)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Column, CursorResult, Executable, Result, Table, bindparam, inspect, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

# Built statements by (dialect, table, columns, conflict columns). A statement built once and
# executed with parameters skips SQLAlchemy's per-call construction and cache-key work, which was
# most of a leaf's store time (docs/benchmarks.md, "Where a sub-call's time goes").
_STATEMENTS: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], Executable] = {}


def _insert(dialect: str, target: type[DeclarativeBase] | Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT, which has ON CONFLICT (the generic one does not)."""
    return postgresql.insert(target) if dialect == "postgresql" else sqlite.insert(target)


def _columns(model: type[DeclarativeBase], names: Iterable[str]) -> list[tuple[str, Column[Any]]]:
    """The table columns behind attribute names (an attribute may map a column of another name)."""
    columns = inspect(model).columns
    return [(name, columns[name]) for name in names]


def run(session: Session, stmt: Executable, params: Mapping[str, Any]) -> CursorResult[Any]:
    """Execute a built Core statement on the session's connection (inside its transaction), past the
    ORM's per-statement work: about a third less time per statement."""
    return session.connection().execute(stmt, params)


def rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def insert_ignore(
    session: Session, model: type[DeclarativeBase], values: Mapping[str, Any], conflict: Sequence[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call inserted the row.

    On PostgreSQL a concurrent uncommitted insert of the same key makes this wait for that
    transaction, so afterwards the winner's row is visible to a fresh statement.
    """
    dialect = session.get_bind().dialect.name
    table = cast(Table, model.__table__)
    key = (dialect, table.name, tuple(values), tuple(conflict))
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        # RETURNING rather than rowcount: drivers report -1 for some INSERTs (psycopg with implicit
        # returning).
        stmt = (
            _insert(dialect, table)
            .values({col: bindparam(f"v_{name}", type_=col.type) for name, col in _columns(model, values)})
            .on_conflict_do_nothing(index_elements=list(conflict))
            .returning(literal_column("1"))
        )
        _STATEMENTS[key] = stmt
    params = {f"v_{name}": value for name, value in values.items()}
    return run(session, stmt, params).first() is not None


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    values: Mapping[str, Any],
    conflict: Sequence[str],
    update: Mapping[str, Any],
) -> None:
    stmt = _insert(session.get_bind().dialect.name, model).values(**values)
    session.execute(stmt.on_conflict_do_update(index_elements=list(conflict), set_=dict(update)))
