"""Store fixtures: every test gets a fresh, migrated database on PostgreSQL (its own schema in the
test database) and on SQLite (its own file)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import create_run, create_tenant, make_engine, make_session_factory, upgrade
from tests.conftest import test_database_url

# Bounded below PostgreSQL's max_connections (100), which other suites share.
POOL_SIZE = 30


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = create_engine(test_database_url(), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def _pg_url(schema: str) -> str:
    base = test_database_url()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables) on the parametrized backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite3'}"
        return
    admin: Engine = request.getfixturevalue("pg_admin")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield _pg_url(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database."""
    eng = make_engine(db_url, pool_size=POOL_SIZE)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def seed(
    sessions: sessionmaker[Session],
    *,
    tenant: str = "acme",
    budget: str = "1",
    run_id: str = "run-1",
    run_budget: str | None = None,
) -> None:
    with sessions.begin() as s:
        create_tenant(s, tenant, Decimal(budget))
        create_run(s, run_id, tenant=tenant, budget=None if run_budget is None else Decimal(run_budget))
