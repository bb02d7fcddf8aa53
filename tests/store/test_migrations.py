"""Migrations upgrade from empty and downgrade to base on both backends, and match the models."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import (
    DatabaseUnreachable,
    SchemaOutdated,
    SchemaTooNew,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    reserve,
    upgrade,
)
from orchestrator.store.migrate import SCHEMA_HEAD
from orchestrator.store.models import Base
from tests.store.conftest import seed

TABLES = {
    "tenants",
    "runs",
    "nodes",
    "steps",
    "blobs",
    "blob_chunks",
    "snapshots",
    "ledger_entries",
    "model_prices",
    "worker_leases",
}


def test_upgrade_from_empty_then_downgrade_to_base(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(SchemaOutdated, match="rlm db upgrade"):
            check_schema(engine)
        upgrade(engine)
        check_schema(engine)
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES

        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) & TABLES == set()
        with pytest.raises(SchemaOutdated):
            check_schema(engine)

        upgrade(engine)  # and back up again: downgrade left nothing behind that blocks it
        check_schema(engine)
    finally:
        engine.dispose()


def test_models_match_migrations(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_unknown_revision_is_too_new(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'zz_future'"))
    with pytest.raises(SchemaTooNew, match="upgrade durable-rlm"):
        check_schema(engine)


def test_ledger_is_append_only(engine: Engine, sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    reserve(sessions, run_id="run-1", tenant="acme", amount=Decimal("0.1"), key="k")
    for statement in ("UPDATE ledger_entries SET amount_nanos = 0", "DELETE FROM ledger_entries"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))


def test_unreachable_database_is_a_clear_error() -> None:
    engine = make_engine("postgresql+psycopg://rlm:rlm@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnreachable, match="RLM_DATABASE_URL"):
        check_schema(engine)


def test_cli_upgrade_works_from_any_directory(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "dir" / "rlm.sqlite3"
    env = {"RLM_DATABASE_URL": f"sqlite:///{db}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    rlm = Path(sys.executable).parent / "rlm"
    up = subprocess.run([str(rlm), "db", "upgrade"], cwd="/", env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    cur = subprocess.run([str(rlm), "db", "current"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert cur.returncode == 0, cur.stderr
    assert cur.stdout.strip() == f"{head_revision()} (head)"


@pytest.mark.timeout(60)
def test_concurrent_upgrades_do_not_collide(db_url: str) -> None:
    """Several workers starting at once may each run the migrations; all succeed, the schema is made once."""
    engines = [make_engine(db_url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(upgrade, engines))
        check_schema(engines[0])
    finally:
        for engine in engines:
            engine.dispose()


def test_schema_head_is_the_migrations_head() -> None:
    assert head_revision() == SCHEMA_HEAD  # a new migration must move SCHEMA_HEAD with it


def test_a_current_schema_is_checked_without_alembic(engine: Engine, db_url: str) -> None:
    """The check every command makes reads the version row alone; Alembic loads only to migrate."""
    code = (
        "import sys\n"
        "from orchestrator.store import make_engine, prepare_schema\n"
        f"engine = make_engine({db_url!r})\n"
        "prepare_schema(engine)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_old_schema_is_still_found_outdated(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    try:
        with pytest.raises(SchemaOutdated):
            check_schema(engine)
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": SCHEMA_HEAD})
