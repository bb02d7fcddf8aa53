"""Sessions for callers (the CLI, tests, programs): create, add documents, ask, show, close.

A session is a tenant's named conversation. Its memory (documents, turns, notes) is in the store; its
turns run through one long-lived ``RLMSession`` workflow, started on the first ask (or again after it
ended: the store, not the workflow, knows the next turn's number). Bad input raises ``SessionError``
(or a store error) before anything is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from orchestrator import corpus
from orchestrator.activities import texts
from orchestrator.errors import RlmError
from orchestrator.ids import BadId, check_run_id
from orchestrator.llm import scripted_model
from orchestrator.runs.start import ensure_tenant
from orchestrator.sessions.limits import DEFAULT_DEADLINE_S, stored_limits
from orchestrator.store import format_usd, get_node, ledger_sums, list_nodes
from orchestrator.store.blobs import get_text
from orchestrator.store.models import RlmSession, Run, SessionTurn
from orchestrator.store.money import from_nanos
from orchestrator.store.sessions import (
    add_document,
    close_session,
    create_session,
    get_session,
    memory,
    open_session,
    set_session_budget,
    turns,
)
from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES
from orchestrator.workflows.session import (
    TURNS_PER_RUN,
    AskReply,
    AskRequest,
    CloseRequest,
    RLMSession,
    SessionInput,
    SessionState,
    session_workflow_id,
)
from orchestrator.workflows.types import Limits, root_id

REGISTERED_POLL_S = 0.1
REFUSAL_CHECK_EVERY = 20  # polls of the store between two looks at the workflow's refusals


class SessionError(RlmError):
    """A session command given input it cannot act on; the message says how to fix it."""


def check_name(name: str) -> str:
    try:
        return check_run_id(name)
    except BadId as exc:
        raise BadId("session name", name, exc.problem) from None


def create(
    sessions: sessionmaker[Session],
    tenant: str,
    name: str,
    *,
    model: str,
    sub_model: str,
    budget: Decimal | None = None,
    limits: Limits | None = None,
    deadline_s: float = DEFAULT_DEADLINE_S,
) -> int:
    """Create the session; returns its id."""
    check_name(name)
    scripted_model.check(model, sub_model)
    with sessions.begin() as session:
        ensure_tenant(session, tenant)
        row = create_session(
            session, tenant, name, model=model, sub_model=sub_model, budget=budget,
            limits=stored_limits(limits or Limits(), deadline_s),
        )  # fmt: skip
        return row.id


def add(
    sessions: sessionmaker[Session],
    tenant: str,
    name: str,
    paths: Sequence[Path],
    limits: corpus.ContextLimits | None = None,
) -> int:
    """Read ``paths`` (files, directories, .jsonl files) as documents into the session's memory; all or
    none. Returns how many were added."""
    with sessions() as session:
        open_session(session, tenant, name)
    docs = corpus.read_documents(paths, limits, label="session document")
    with sessions.begin() as session:
        row = open_session(session, tenant, name)
        for doc in docs:
            add_document(session, row.id, doc.name, doc.value)
    return len(docs)


def _askable(session: Session, tenant: str, name: str) -> RlmSession:
    row = open_session(session, tenant, name)
    if row.budget_nanos is not None and row.spent_nanos + row.reserved_nanos >= row.budget_nanos:
        raise SessionError(
            f"session {name!r} has spent its budget (spent {format_usd(row.spent)}, reserved "
            f"{format_usd(row.reserved)} of {format_usd(row.budget or Decimal(0))} USD)"
            "; start another session"
        )
    return row


async def ask(
    client: Client,
    sessions: sessionmaker[Session],
    tenant: str,
    name: str,
    question: str,
    task_queue: str,
    *,
    turns_per_run: int = TURNS_PER_RUN,
) -> AskReply:
    """Queue a turn; returns its number and run id once its run is registered. ``turns_per_run``: how
    often a session's workflow continues as new, when this ask starts it."""
    if not question.strip():
        raise SessionError("the question is empty; give the question to ask")
    with sessions.begin() as session:
        row = _askable(session, tenant, name)
        start = SessionInput(
            session_id=row.id, tenant=tenant, name=name, next_turn=row.turns + 1, turns_per_run=turns_per_run
        )
        packed = texts.pack(session, question)
    wid = session_workflow_id(tenant, name)
    # The session's workflow, unless it runs already (then its own counters are the ones to use).
    await client.start_workflow(
        RLMSession.run, start, id=wid, task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )  # fmt: skip
    handle = client.get_workflow_handle(wid)
    try:
        reply = await handle.execute_update(RLMSession.ask, AskRequest(packed))
    except WorkflowUpdateFailedError as exc:
        raise SessionError(f"session {name!r} refused the question: {exc.cause or exc}") from None
    await _registered(sessions, handle, row.id, reply.turn)
    return reply


async def _registered(
    sessions: sessionmaker[Session], handle: WorkflowHandle[Any, Any], session_id: int, turn: int
) -> None:
    """Until the turn's run is in the store (after the turns queued before it have ended)."""
    polls = 0
    while True:
        with sessions() as session:
            if session.get(SessionTurn, (session_id, turn)) is not None:
                return
        polls += 1
        if polls % REFUSAL_CHECK_EVERY == 0:
            state: SessionState = await handle.query(RLMSession.state)
            if turn in state.refused:
                raise SessionError(state.refused[turn])
        await asyncio.sleep(REGISTERED_POLL_S)


async def close(client: Client | None, sessions: sessionmaker[Session], tenant: str, name: str) -> bool:
    """Close the session (it takes no more turns; queued ones still run); False when it was closed."""
    with sessions.begin() as session:
        closed = close_session(session, get_session(session, tenant, name))
    if client is not None:
        try:
            await client.get_workflow_handle(session_workflow_id(tenant, name)).signal(
                RLMSession.close, CloseRequest("closed by an operator")
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
    return closed


def show(sessions: sessionmaker[Session], tenant: str, name: str) -> dict[str, Any]:
    """The session as ``rlm session show --json`` prints it: turns, spend (from the ledger), memory."""
    with sessions() as session:
        row = get_session(session, tenant, name)
        mem = memory(session, row.id)
        spend = ledger_sums(session, session_id=row.id)
        views = []
        for t in turns(session, row.id):
            run = session.get(Run, t.run_id)
            status, answer_ref, error = t.status, t.answer_ref, t.error
            if status not in FINAL_STATUSES and run is not None and run.status in FINAL_STATUSES:
                # The run ended, and the session's workflow has not recorded it yet (e.g. `rlm ask`'s own
                # worker stopped with the answer): the run's root is the truth.
                root = get_node(session, root_id(run.run_id))
                status, answer_ref, error = run.status, root.answer_ref, run.error
            answer = None if answer_ref is None else get_text(session, answer_ref)
            views.append(
                {
                    "turn": t.turn,
                    "run_id": t.run_id,
                    "status": status,
                    "answer": answer,
                    "error": error,
                    "spent_usd": format_usd(from_nanos(run.spent_nanos if run else 0)),
                }
            )
        return {
            "tenant": tenant,
            "name": row.name,
            "status": row.status,
            "model": row.model,
            "sub_model": row.sub_model,
            "budget_usd": None if row.budget is None else format_usd(row.budget),
            "spent_usd": format_usd(spend.spent),
            "reserved_usd": format_usd(spend.reserved),
            "turns": views,
            "notes": mem.notes,
            "documents": mem.documents,
            "document_chars": mem.chars,
            "document_bytes": mem.bytes,
            "created_at": row.created_at.isoformat(),
            "closed_at": None if row.closed_at is None else row.closed_at.isoformat(),
        }


def raise_budget(
    sessions: sessionmaker[Session], tenant: str, name: str, amount: Decimal
) -> tuple[Decimal, Decimal, list[str]]:
    """Add ``amount`` USD to the session's budget; returns (before, after, the turns' paused nodes), so
    an operator can ``rlm resume`` a turn its budget held."""
    if not amount.is_finite() or amount <= 0:
        raise SessionError(f"the amount {amount} must be a positive number of USD, e.g. 5 or 0.50")
    with sessions.begin() as session:
        row = get_session(session, tenant, name)
        if row.budget is None:
            raise SessionError(
                f"session {name} has no budget of its own; it is limited by tenant {tenant}'s: "
                f"rlm budget raise --tenant {tenant} USD"
            )
        before = row.budget
        set_session_budget(session, row, before + amount)
        paused = [
            node.node_id
            for run_id in session.scalars(select(Run.run_id).where(Run.session_id == row.id))
            for node in list_nodes(session, run_id)
            if node.status in PAUSED_STATUSES
        ]
    return before, before + amount, paused
