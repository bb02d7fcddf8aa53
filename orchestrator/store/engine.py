"""Engines and sessions for PostgreSQL (psycopg 3) and SQLite, with the same behaviour on both.

SQLite: WAL (readers never block the writer), ``busy_timeout`` (writers queue instead of failing),
foreign keys on, and every transaction opened with ``BEGIN IMMEDIATE``. The last one matters: a
deferred SQLite transaction that reads and then writes fails at once with SQLITE_BUSY when another
writer committed in between, and ``busy_timeout`` cannot help it. Taking the write lock up front
makes SQLite transactions serializable and lets them simply wait their turn.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store.errors import InvalidValue

SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 5


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def _parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidValue(
            f"database URL {url!r} is not valid; use e.g. sqlite:////path/rlm.sqlite3 or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidValue(
            f"database URL {safe_url(parsed)!r} uses {backend!r}; durable-rlm supports sqlite and postgresql"
        )
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    # Connections opening a new file at the same moment race to switch it to WAL; the loser gets
    # "database is locked" at once, without the busy handler. Retry until the switch is done.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite would BEGIN lazily).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """An engine for ``url``; for a SQLite file its parent directory is created.

    ``pool_size`` bounds concurrent connections (default: SQLAlchemy's 5 + 10 overflow).
    """
    parsed = _parse(url)
    kwargs: dict[str, Any] = {}
    if pool_size is not None:
        kwargs.update(pool_size=pool_size, max_overflow=0)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise InvalidValue(
                "in-memory SQLite cannot be shared between connections; give a file, e.g. sqlite:////tmp/rlm.sqlite3"
            )
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_engine(parsed, **kwargs)
        _sqlite_events(engine)
        return engine
    # Pinged at checkout, a connection the network or a server restart cut is replaced instead of
    # failing the first statement; a SQLite file has no connection to lose, so it skips the ping that
    # every transaction would otherwise pay.
    kwargs.update(pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S})
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "handle_error", _failed_ping_is_a_disconnect)
    return engine


def _failed_ping_is_a_disconnect(context: Any) -> None:
    # A connection cut by the network mid-query can reach the pool still marked ACTIVE; psycopg then
    # refuses the pre-ping itself ("can't change 'autocommit' now") and SQLAlchemy, not seeing a
    # disconnect, would raise that instead of opening a fresh connection.
    if context.is_pre_ping:
        context.is_disconnect = True


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: callers read returned rows after the transaction that made them ends.
    return sessionmaker(bind=engine, expire_on_commit=False)
