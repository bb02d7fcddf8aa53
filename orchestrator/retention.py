"""``rlm prune``: remove the steps, snapshots, contexts and blobs of runs that ended long ago.

One transaction per batch of runs, so running work never waits long on a lock. What a pruned run
keeps (its summary, nodes and ledger) and which blobs stay is decided in ``store.retention``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import RlmError
from orchestrator.store import get_tenant
from orchestrator.store.blobs import TOUCH_EVERY
from orchestrator.store.models import utcnow
from orchestrator.store.retention import (
    collectable_blobs,
    delete_blobs,
    delete_run_rows,
    oldest_live_run,
    prunable_runs,
    run_rows,
    unused_blobs,
)

log = structlog.get_logger(__name__)

RUNS_PER_BATCH = 20
BLOBS_PER_BATCH = 500
# A blob stored this recently stays even when no row references it yet: its writer may not have
# recorded the step that will.
RECENT_PUT = timedelta(hours=1)
# A dry run reads every candidate at once (it changes nothing, so holds no lock for long).
DRY_RUN_LIMIT = 1_000_000


class PruneError(RlmError):
    pass


@dataclass
class PruneReport:
    dry_run: bool
    older_than_s: float
    tenant: str | None
    runs: list[str] = field(default_factory=list)
    steps: int = 0
    snapshots: int = 0
    blobs: int = 0
    blob_bytes: int = 0  # as stored (compressed)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        return (
            f"{verb} {self.steps} steps, {self.snapshots} snapshots and {self.blobs} blobs "
            f"({self.blob_bytes / 1e6:.1f} MB) of {len(self.runs)} runs"
        )


def prune(
    sessions: sessionmaker[Session],
    *,
    older_than_s: float,
    tenant: str | None = None,
    dry_run: bool = False,
    batch: int = RUNS_PER_BATCH,
    recent_put: timedelta = RECENT_PUT,
) -> PruneReport:
    """Prune the runs that ended more than ``older_than_s`` ago (of ``tenant``, when given)."""
    if older_than_s < 0:
        raise PruneError(f"--older-than must not be negative, got {older_than_s:g} s")
    now = utcnow()
    finished_before = now - timedelta(seconds=older_than_s)
    report = PruneReport(dry_run=dry_run, older_than_s=older_than_s, tenant=tenant)
    with sessions() as session:
        if tenant is not None:
            get_tenant(session, tenant)  # an unknown tenant is an error, not "nothing to prune"
        put_before = _put_before(now - recent_put, oldest_live_run(session))
    if dry_run:
        _count(sessions, report, finished_before, put_before)
        return report
    while True:
        with sessions.begin() as session:
            ids = prunable_runs(session, finished_before=finished_before, tenant=tenant, limit=batch)
            if not ids:
                break
            rows = run_rows(session, ids)
            delete_run_rows(session, ids)
            blobs, stored = delete_blobs(session, rows.blobs, put_before=put_before)
        report.runs += ids
        report.steps += rows.steps
        report.snapshots += rows.snapshots
        report.blobs += blobs
        report.blob_bytes += stored
        log.info("prune.batch", runs=len(ids), steps=rows.steps, blobs=blobs, blob_bytes=stored)
    while True:
        with sessions.begin() as session:
            unused = unused_blobs(session, put_before=put_before, limit=BLOBS_PER_BATCH)
            blobs, stored = delete_blobs(session, unused, put_before=put_before)
        report.blobs += blobs
        report.blob_bytes += stored
        if len(unused) < BLOBS_PER_BATCH:
            return report


def _count(
    sessions: sessionmaker[Session], report: PruneReport, finished_before: datetime, put_before: datetime
) -> None:
    with sessions() as session:
        ids = prunable_runs(
            session, finished_before=finished_before, tenant=report.tenant, limit=DRY_RUN_LIMIT
        )
        rows = run_rows(session, ids)
        report.runs = ids
        report.steps, report.snapshots = rows.steps, rows.snapshots
        # The pruned runs' blobs and those no run uses any more (REPL snapshots dropped while running).
        report.blobs, report.blob_bytes = collectable_blobs(
            session, None, put_before=put_before, ignoring=ids
        )


def _put_before(recent: datetime, oldest_live: datetime | None) -> datetime:
    """Blobs stored at or after this stay: recent ones, and any a live run may have stored again (a
    put moves ``last_put_at`` only when it is ``TOUCH_EVERY`` old, hence the margin)."""
    return (recent if oldest_live is None else min(recent, oldest_live)) - TOUCH_EVERY
