"""``launch``: create a scheduled fire's run in the store and return its root's input.

Idempotent: a retried activity (or a replayed launcher) finds the run it created and returns the same
input. The query and context are the blobs stored when the schedule was created, so a fire does not
depend on any file being readable by the worker. The run is registered like every other
(``orchestrator.runs.register_run``); the launcher starts the root as its child.
"""

from __future__ import annotations

from decimal import Decimal

import structlog
from temporalio import activity

from orchestrator.activities.deps import Deps
from orchestrator.runs import RunRecord, register_run
from orchestrator.store import get_text
from orchestrator.workflows.common import memo
from orchestrator.workflows.launcher import LaunchOutput, LaunchRequest

log = structlog.get_logger(__name__)


class LaunchActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _launch(self, req: LaunchRequest) -> LaunchOutput:
        inp = req.launch
        if inp.query.blob is None or inp.context.blob is None:
            raise ValueError(f"schedule {inp.schedule!r}: query and context must be stored blobs")
        rec = RunRecord(
            run_id=req.run_id,
            tenant=inp.tenant,
            query_ref=inp.query.blob,
            context_ref=inp.context.blob,
            context_suffix=inp.context_suffix,
            model=inp.model,
            sub_model=inp.sub_model,
            limits=inp.limits,
            deadline_epoch_s=req.deadline_epoch_s,
            budget_usd=None if inp.budget_usd is None else Decimal(inp.budget_usd),
            schedule=inp.schedule,
        )
        with self.deps.sessions.begin() as session:
            root, created = register_run(session, rec)
            query = get_text(session, inp.query.blob)
        log.info("launch.run", schedule=inp.schedule, run_id=req.run_id, created=created)
        return LaunchOutput(root=root, created=created, memo={**memo(query), "schedule": inp.schedule})

    @activity.defn(name="launch")
    async def launch(self, req: LaunchRequest) -> LaunchOutput:
        return await self.deps.in_store(self._launch, req)
