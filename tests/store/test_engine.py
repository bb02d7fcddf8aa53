"""Engine set-up: SQLite (the zero-setup default), URL checks, and PostgreSQL connections that a
network cut left behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from orchestrator.store import InvalidValue, make_engine
from tests.conftest import test_database_url


def test_sqlite_pragmas_and_parent_directory(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'rlm.sqlite3'}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 60_000
        assert (tmp_path / "a" / "b" / "rlm.sqlite3").is_file()
    finally:
        engine.dispose()


def test_many_first_connections_to_a_new_file(tmp_path: Path) -> None:
    """Connections racing to switch a new file to WAL must wait, not fail with 'database is locked'."""
    errors: list[str] = []

    def first_write(engine: Engine, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            with engine.begin() as conn:
                conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        except Exception as exc:  # collected: the assertion below shows them all
            errors.append(repr(exc))

    for attempt in range(40):
        engines = [make_engine(f"sqlite:///{tmp_path / f'{attempt}.sqlite3'}") for _ in range(8)]
        barrier = threading.Barrier(len(engines))
        threads = [threading.Thread(target=first_write, args=(e, barrier)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for engine in engines:
            engine.dispose()
    assert errors == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("mysql://u@h/d", "supports sqlite and postgresql"),
        ("::nonsense::", "not valid"),
    ],
)
def test_unusable_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        make_engine(url)


def test_a_connection_left_mid_query_is_replaced_by_the_pre_ping() -> None:
    """A network cut can leave a pooled PostgreSQL connection marked ACTIVE; psycopg then refuses even
    the pre-ping. The pool must take that for a dead connection and open a new one, not raise."""
    engine = make_engine(test_database_url(), pool_size=1)
    try:
        raw = engine.raw_connection()
        stuck = raw.dbapi_connection
        assert stuck is not None
        stuck.pgconn.send_query(b"SELECT 1")  # a query sent, its result never read
        assert engine.dialect._do_ping_w_event(stuck) is False
        raw.invalidate()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()
