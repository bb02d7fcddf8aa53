"""Engine set-up specific to SQLite (the zero-setup default) and URL checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from orchestrator.store import InvalidValue, make_engine


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
