"""Worker leases on both backends: renewal extends, expiry makes a worker dead, purge and drop remove."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import (
    InvalidValue,
    drop_lease,
    live_workers,
    purge_leases,
    renew_lease,
    store_scope,
)
from orchestrator.store.models import WorkerLease

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_a_lease_lives_until_its_own_expiry_and_renewal_extends_it(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        renew_lease(s, "w-short", host="h1", ttl_s=10, now=T0)
        renew_lease(s, "w-long", host="h2", ttl_s=60, now=T0)
    with sessions() as s:
        assert live_workers(s, now=T0 + timedelta(seconds=9)) == {"w-short", "w-long"}
        # Each worker's own lease length counts, not the reader's.
        assert live_workers(s, now=T0 + timedelta(seconds=11)) == {"w-long"}
    with sessions.begin() as s:
        renew_lease(s, "w-short", host="h1", ttl_s=10, now=T0 + timedelta(seconds=8))
    with sessions() as s:
        assert live_workers(s, now=T0 + timedelta(seconds=17)) == {"w-short", "w-long"}
        row = s.scalars(select(WorkerLease).where(WorkerLease.worker_id == "w-short")).one()
        assert (row.started_at, row.renewed_at, row.host) == (T0, T0 + timedelta(seconds=8), "h1")


def test_drop_and_purge(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        for name, ttl in (("a", 10), ("b", 10), ("c", 3600)):
            renew_lease(s, name, host="h", ttl_s=ttl, now=T0)
    with sessions.begin() as s:
        drop_lease(s, "a")
        drop_lease(s, "never-there")  # a worker that stops twice, or lost its row to a purge
    with sessions.begin() as s:
        assert purge_leases(s, expired_before=T0 + timedelta(seconds=11)) == 1
    with sessions() as s:
        assert set(s.scalars(select(WorkerLease.worker_id))) == {"c"}


@pytest.mark.parametrize(
    ("worker_id", "ttl"), [("", 10.0), ("x" * 256, 10.0), ("w", 0.0), ("w", float("nan"))]
)
def test_bad_lease_values_are_refused(sessions: sessionmaker[Session], worker_id: str, ttl: float) -> None:
    with pytest.raises(InvalidValue), sessions.begin() as s:
        renew_lease(s, worker_id, host="h", ttl_s=ttl)


def test_store_scope_hides_the_password_and_tells_stores_apart() -> None:
    base = "postgresql+psycopg://rlm:{}@127.0.0.1:5432/rlm"
    assert store_scope(base.format("secret")) == store_scope(base.format("other-secret"))
    assert store_scope(base.format("x")) != store_scope(base.format("x") + "?options=-csearch_path%3Dother")
    assert store_scope("sqlite:////a/rlm.sqlite3") != store_scope("sqlite:////b/rlm.sqlite3")
    assert len(store_scope("sqlite:////a/rlm.sqlite3")) == 12
