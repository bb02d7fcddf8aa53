"""A session's turn in the store: ``session_turn_start`` registers the turn's run (through
``register_run``, the one run-start path) and returns its root's input; ``session_turn_finish``
records the turn's answer and status.

Both are idempotent: a retried start finds the run and the turn it registered (``register_run`` keeps
the first run of an id, ``add_turn`` the first turn of a number) and returns the same input.
"""

from __future__ import annotations

import time

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator import corpus
from orchestrator.activities import texts
from orchestrator.activities.deps import Deps
from orchestrator.protocol.session_prompt import turn_paragraph
from orchestrator.runs import RunRecord, register_run
from orchestrator.sessions.limits import deadline_s, limits_of
from orchestrator.store import put_blob, put_text
from orchestrator.store.sessions import add_turn, documents, finish_turn, get_session, notes
from orchestrator.workflows.common import memo
from orchestrator.workflows.session import TurnEnded, TurnRequest, TurnStarted, turn_run_id
from orchestrator.workflows.types import TurnSpec, root_id

log = structlog.get_logger(__name__)

EMPTY_CORPUS = "(this session has no documents yet: add some with `rlm session add NAME PATH...`)"


class SessionActivities:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def _start(self, req: TurnRequest) -> TurnStarted:
        with self.deps.sessions.begin() as session:
            row = get_session(session, req.tenant, req.name)
            if row.id != req.session_id:
                raise ApplicationError(
                    f"session {req.name!r} of tenant {req.tenant!r} was replaced", non_retryable=True
                )
            question = texts.unpack(session, req.question)
            docs = documents(session, row.id)
            if docs:
                context_ref = put_blob(session, corpus.pack(corpus.Document(n, v) for n, v in docs))
                suffix = corpus.SUFFIX
            else:
                context_ref, suffix = put_text(session, EMPTY_CORPUS), ".txt"
            earlier = len(notes(session, row.id, before=req.turn))
            previous = root_id(turn_run_id(req.name, row.id, req.turn - 1)) if req.turn > 1 else None
            rec = RunRecord(
                run_id=req.run_id,
                tenant=req.tenant,
                query_ref=put_text(session, question + turn_paragraph(req.name, req.turn, earlier)),
                context_ref=context_ref,
                context_suffix=suffix,
                model=row.model,
                sub_model=row.sub_model,
                limits=limits_of(row.limits),
                deadline_epoch_s=time.time() + deadline_s(row.limits),
                session=TurnSpec(session_id=row.id, turn=req.turn, previous_root=previous),
            )
            root, created = register_run(session, rec)
            add_turn(session, row.id, req.turn, run_id=req.run_id, question=question)
        log.info("session.turn_started", session=req.name, turn=req.turn, run_id=req.run_id, created=created)
        return TurnStarted(root=root, memo={**memo(question), "session": req.name})

    def _finish(self, ended: TurnEnded) -> None:
        with self.deps.sessions.begin() as session:
            answer = None if ended.answer is None else texts.unpack(session, ended.answer)
            finish_turn(
                session, ended.session_id, ended.turn, status=ended.status, answer=answer, error=ended.error
            )
        log.info("session.turn_finished", session_id=ended.session_id, turn=ended.turn, status=ended.status)

    @activity.defn(name="session_turn_start")
    async def turn_start(self, req: TurnRequest) -> TurnStarted:
        return await self.deps.in_store(self._start, req)

    @activity.defn(name="session_turn_finish")
    async def turn_finish(self, ended: TurnEnded) -> None:
        await self.deps.in_store(self._finish, ended)
