"""Dialect helpers shared by the repository modules (PostgreSQL and SQLite spell upserts alike)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Result, literal_column
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def _insert(session: Session, model: type[DeclarativeBase]) -> postgresql.Insert | sqlite.Insert:
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


def insert_ignore(
    session: Session, model: type[DeclarativeBase], values: Mapping[str, Any], conflict: Sequence[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when this call inserted the row.

    On PostgreSQL a concurrent uncommitted insert of the same key makes this wait for that
    transaction, so afterwards the winner's row is visible to a fresh statement.
    """
    # RETURNING rather than rowcount: drivers report -1 for some INSERTs (psycopg with implicit returning).
    stmt = _insert(session, model).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    return session.execute(stmt.returning(literal_column("1"))).first() is not None


def upsert(
    session: Session,
    model: type[DeclarativeBase],
    values: Mapping[str, Any],
    conflict: Sequence[str],
    update: Mapping[str, Any],
) -> None:
    stmt = _insert(session, model).values(**values)
    session.execute(stmt.on_conflict_do_update(index_elements=list(conflict), set_=dict(update)))
