"""Read queries for ``rlm report`` that the tree and the transcripts do not answer: the run's tenant.

Repository-layer style: every function takes the caller's ``Session`` and never commits.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator.store.errors import NotFound
from orchestrator.store.models import Run, Tenant


def run_tenant(session: Session, run_id: str) -> str:
    """The name of the tenant the run belongs to."""
    stmt = select(Tenant.name).join(Run, Run.tenant_id == Tenant.id).where(Run.run_id == run_id)
    name = session.scalars(stmt).one_or_none()
    if name is None:
        raise NotFound("run", run_id)
    return name
