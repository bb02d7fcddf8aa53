"""Sessions in the store: a tenant's named conversation, its documents, turns and notes.

Like the rest of the repository layer, every function takes the caller's ``Session`` and never commits.
A session's memory lives here and only here: its workflow carries ids and counters, never texts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from orchestrator.store import validate
from orchestrator.store._sql import insert_ignore
from orchestrator.store.blobs import get_text, put_text
from orchestrator.store.errors import AlreadyExists, InvalidValue, NotFound
from orchestrator.store.models import (
    RUN_ID_MAX,
    Blob,
    RlmSession,
    Run,
    SessionDocument,
    SessionNote,
    SessionTurn,
    utcnow,
)
from orchestrator.store.repository import get_tenant
from orchestrator.vocabulary import FINAL_STATUSES, SessionStatus, Status

# Notes up to this many characters stay in their row; longer ones go to a blob.
NOTE_INLINE_CHARS = 2000
NOTE_KEY_MAX = 512


class NoSession(NotFound):
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.session = name
        # Not NotFound's message: "no session X for tenant T" names the tenant that was asked.
        super().__init__("session", name)
        self.args = (
            f"no session {name!r} for tenant {tenant!r}; create it with `rlm session create {name} "
            f"--tenant {tenant}` or list a run's session with `rlm show RUN`",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class SessionClosed(InvalidValue):
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant = tenant
        self.session = name
        super().__init__(
            f"session {name!r} of tenant {tenant!r} is closed; it takes no more turns "
            f"(read it with `rlm session show {name} --tenant {tenant}`)"
        )


def create_session(
    session: Session,
    tenant: str,
    name: str,
    *,
    model: str,
    sub_model: str,
    budget: Decimal | None = None,
    limits: Mapping[str, Any] | None = None,
) -> RlmSession:
    validate.text_id(name, "session name", RUN_ID_MAX)
    budget_nanos = None if budget is None else validate.nanos(budget, "session budget")
    tenant_row = get_tenant(session, tenant)
    values = {
        "tenant_id": tenant_row.id,
        "name": name,
        "status": SessionStatus.OPEN.value,
        "model": model,
        "sub_model": sub_model,
        "budget_nanos": budget_nanos,
        "limits": dict(limits or {}),
        "turns": 0,
        "created_at": utcnow(),
        "spent_nanos": 0,
        "reserved_nanos": 0,
    }
    if not insert_ignore(session, RlmSession, values, ["tenant_id", "name"]):
        raise AlreadyExists("session", name, f"ask it with `rlm ask {name} QUESTION --tenant {tenant}`")
    return get_session(session, tenant, name)


def get_session(session: Session, tenant: str, name: str) -> RlmSession:
    """The tenant's session of that name; another tenant's session is as unknown as a missing one."""
    row = session.scalars(
        select(RlmSession)
        .where(RlmSession.tenant_id == get_tenant(session, tenant).id, RlmSession.name == name)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise NoSession(tenant, name)
    return row


def open_session(session: Session, tenant: str, name: str) -> RlmSession:
    """The session, refused when it is closed (it takes no documents and no turns then)."""
    row = get_session(session, tenant, name)
    if row.status != SessionStatus.OPEN:
        raise SessionClosed(tenant, name)
    return row


def close_session(session: Session, row: RlmSession) -> bool:
    """Close it; False when it was closed already."""
    done = session.execute(
        update(RlmSession)
        .where(RlmSession.id == row.id, RlmSession.status == SessionStatus.OPEN.value)
        .values(status=SessionStatus.CLOSED.value, closed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def set_session_budget(session: Session, row: RlmSession, budget: Decimal | None) -> None:
    """Set (None: remove) the session's limit; it applies to the very next reservation."""
    nanos = None if budget is None else validate.nanos(budget, "session budget")
    session.execute(
        update(RlmSession)
        .where(RlmSession.id == row.id)
        .values(budget_nanos=nanos)
        .execution_options(synchronize_session=False)
    )


# --- documents -------------------------------------------------------------------------------------


def add_document(session: Session, session_id: int, name: str, value: str | Any) -> int:
    """Store a document of the session's memory (a text, or a JSON value); returns its position (1-based)."""
    is_json = not isinstance(value, str)
    text = json.dumps(value, ensure_ascii=False) if is_json else value
    last = session.scalar(
        select(func.coalesce(func.max(SessionDocument.seq), 0)).where(
            SessionDocument.session_id == session_id
        )
    )
    seq = int(last or 0) + 1
    session.add(
        SessionDocument(
            session_id=session_id,
            seq=seq,
            name=name,
            blob_sha=put_text(session, text),
            chars=len(text),
            is_json=is_json,
        )
    )
    session.flush()
    return seq


def documents(session: Session, session_id: int) -> list[tuple[str, str | Any]]:
    """The session's documents as (name, value: a text or a JSON value), in the order they were added."""
    rows = session.execute(
        select(SessionDocument.name, SessionDocument.blob_sha, SessionDocument.is_json)
        .where(SessionDocument.session_id == session_id)
        .order_by(SessionDocument.seq)
    ).all()
    return [
        (name, json.loads(get_text(session, sha)) if is_json else get_text(session, sha))
        for name, sha, is_json in rows
    ]


@dataclass(frozen=True)
class Memory:
    documents: int
    chars: int
    bytes: int  # the documents' stored size
    notes: int
    turns: int


def memory(session: Session, session_id: int) -> Memory:
    count, chars, stored = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(SessionDocument.chars), 0),
            func.coalesce(func.sum(Blob.size), 0),
        )
        .select_from(SessionDocument)
        .join(Blob, Blob.sha256 == SessionDocument.blob_sha)
        .where(SessionDocument.session_id == session_id)
    ).one()
    notes = session.scalar(select(func.count()).where(SessionNote.session_id == session_id)) or 0
    turns = session.scalar(select(func.count()).where(SessionTurn.session_id == session_id)) or 0
    return Memory(int(count), int(chars), int(stored), int(notes), int(turns))


# --- turns -----------------------------------------------------------------------------------------


def add_turn(session: Session, session_id: int, turn: int, *, run_id: str, question: str) -> bool:
    """Record turn ``turn`` (its run registered in the same transaction); False when it exists."""
    values = {
        "session_id": session_id,
        "turn": turn,
        "run_id": run_id,
        "question_ref": put_text(session, question),
        "answer_ref": None,
        "status": Status.RUNNING.value,
        "error": None,
        "created_at": utcnow(),
        "finished_at": None,
    }
    if not insert_ignore(session, SessionTurn, values, ["session_id", "turn"]):
        return False
    session.execute(
        update(RlmSession)
        .where(RlmSession.id == session_id, RlmSession.turns < turn)
        .values(turns=turn)
        .execution_options(synchronize_session=False)
    )
    return True


def link_run(session: Session, run_id: str, session_id: int) -> None:
    """The run is a turn of the session: its model calls count against the session's budget too."""
    session.execute(
        update(Run)
        .where(Run.run_id == run_id)
        .values(session_id=session_id)
        .execution_options(synchronize_session=False)
    )


def finish_turn(
    session: Session, session_id: int, turn: int, *, status: str, answer: str | None, error: str | None
) -> None:
    if status not in FINAL_STATUSES:
        raise InvalidValue(f"a turn ends with a final status, not {status!r}")
    session.execute(
        update(SessionTurn)
        .where(SessionTurn.session_id == session_id, SessionTurn.turn == turn)
        .values(
            status=status,
            answer_ref=None if answer is None else put_text(session, answer),
            error=error,
            finished_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


def turns(session: Session, session_id: int) -> list[SessionTurn]:
    return list(
        session.scalars(
            select(SessionTurn)
            .where(SessionTurn.session_id == session_id)
            .order_by(SessionTurn.turn)
            .execution_options(populate_existing=True)
        )
    )


def get_turn(session: Session, session_id: int, turn: int) -> SessionTurn:
    row = session.get(SessionTurn, (session_id, turn), populate_existing=True)
    if row is None:
        raise NotFound("turn", str(turn))
    return row


def history(session: Session, session_id: int, before: int) -> list[dict[str, Any]]:
    """Earlier turns' questions and answers (None for a turn that ended without one), oldest first."""
    rows = session.execute(
        select(SessionTurn.turn, SessionTurn.question_ref, SessionTurn.answer_ref)
        .where(SessionTurn.session_id == session_id, SessionTurn.turn < before)
        .order_by(SessionTurn.turn)
    ).all()
    return [
        {
            "turn": turn,
            "question": get_text(session, question),
            "answer": None if answer is None else get_text(session, answer),
        }
        for turn, question, answer in rows
    ]


def session_of_run(session: Session, run_id: str) -> tuple[RlmSession, int] | None:
    """The session a run is a turn of, and the turn's number (None: not a session's turn)."""
    row = session.execute(
        select(RlmSession, SessionTurn.turn)
        .join(SessionTurn, SessionTurn.session_id == RlmSession.id)
        .where(SessionTurn.run_id == run_id)
    ).one_or_none()
    return None if row is None else (row[0], int(row[1]))


# --- notes -----------------------------------------------------------------------------------------


def add_note(session: Session, session_id: int, turn: int, text: str, *, key: str) -> bool:
    """Keep a note; ``key`` (node, cell, call) makes it once however often the cell runs. False: kept
    already."""
    validate.text_id(key, "note key", NOTE_KEY_MAX)
    seq = session.scalar(
        select(func.coalesce(func.max(SessionNote.seq), 0)).where(
            SessionNote.session_id == session_id, SessionNote.turn == turn
        )
    )
    inline = len(text) <= NOTE_INLINE_CHARS
    values = {
        "session_id": session_id,
        "turn": turn,
        "seq": int(seq or 0) + 1,
        "text": text if inline else None,
        "blob_sha": None if inline else put_text(session, text),
        "idempotency_key": key,
        "created_at": utcnow(),
    }
    return insert_ignore(session, SessionNote, values, ["idempotency_key"])


def notes(session: Session, session_id: int, before: int | None = None) -> list[str]:
    """The session's notes, oldest first; ``before``: only those of turns before that one."""
    stmt = select(SessionNote.text, SessionNote.blob_sha).where(SessionNote.session_id == session_id)
    if before is not None:
        stmt = stmt.where(SessionNote.turn < before)
    rows = session.execute(stmt.order_by(SessionNote.id)).all()
    return [text if text is not None else get_text(session, sha or "") for text, sha in rows]
