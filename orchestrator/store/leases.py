"""Worker leases: which workers of this store are alive, so that only dead workers' sandboxes are removed.

A worker writes its lease before it polls for work (so before it starts any container), renews it in the
background and deletes it when it stops. Each renewal sets ``expires_at`` from the worker's own lease
length; a lease past ``expires_at`` belongs to a dead worker. Times come from the workers' clocks, so
hosts sharing a store must keep their clocks in step (NTP) to well under a lease length.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from orchestrator.store._sql import rowcount, upsert
from orchestrator.store.engine import safe_url
from orchestrator.store.errors import InvalidValue
from orchestrator.store.models import WORKER_ID_MAX, WorkerLease, utcnow

SCOPE_CHARS = 12


def store_scope(database_url: str) -> str:
    """A short, stable name of the store (its URL with the password hidden): containers carry it, so
    workers of different stores sharing one Docker engine never remove each other's containers."""
    return hashlib.sha256(safe_url(database_url).encode()).hexdigest()[:SCOPE_CHARS]


def renew_lease(
    session: Session, worker_id: str, *, host: str, ttl_s: float, now: datetime | None = None
) -> None:
    """Write or extend ``worker_id``'s lease to ``now + ttl_s`` (the first call also sets ``started_at``)."""
    if not worker_id or len(worker_id) > WORKER_ID_MAX:
        raise InvalidValue(f"worker id must be 1 to {WORKER_ID_MAX} characters, got {len(worker_id)}")
    if not ttl_s > 0:
        raise InvalidValue(f"lease length must be a positive number of seconds, got {ttl_s!r}")
    now = now or utcnow()
    expires = now + timedelta(seconds=ttl_s)
    upsert(
        session,
        WorkerLease,
        {"worker_id": worker_id, "host": host, "started_at": now, "renewed_at": now, "expires_at": expires},
        ["worker_id"],
        {"renewed_at": now, "expires_at": expires},
    )


def drop_lease(session: Session, worker_id: str) -> None:
    session.execute(delete(WorkerLease).where(WorkerLease.worker_id == worker_id))


def live_workers(session: Session, now: datetime | None = None) -> set[str]:
    """Ids of the workers whose lease has not expired."""
    now = now or utcnow()
    return set(session.scalars(select(WorkerLease.worker_id).where(WorkerLease.expires_at > now)))


def purge_leases(session: Session, *, expired_before: datetime) -> int:
    """Delete leases that expired before ``expired_before`` (kept a while for operators to look at)."""
    return rowcount(session.execute(delete(WorkerLease).where(WorkerLease.expires_at < expired_before)))
