"""Run-layer fixtures: the store's (a fresh migrated database per test, on PostgreSQL and on SQLite)."""

from __future__ import annotations

from tests.store import conftest as store_fixtures

pg_admin = store_fixtures.pg_admin
db_url = store_fixtures.db_url
engine = store_fixtures.engine
sessions = store_fixtures.sessions
