"""Sessions in the store on both backends: names per tenant, documents, turns, idempotent notes, the
session as a budget scope (no overshoot under concurrency) and what retention keeps for an open session."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.retention import prune
from orchestrator.store import (
    AlreadyExists,
    BudgetExhausted,
    blob_exists,
    create_run,
    create_tenant,
    finish_node,
    ledger_sums,
    put_text,
    release,
    reserve,
    set_run_status,
    settle,
    tenant_usage,
    upsert_node,
)
from orchestrator.store.models import Blob, RlmSession, Snapshot, utcnow
from orchestrator.store.sessions import (
    NoSession,
    SessionClosed,
    add_document,
    add_note,
    add_turn,
    close_session,
    create_session,
    documents,
    finish_turn,
    get_session,
    history,
    link_run,
    memory,
    notes,
    open_session,
    session_of_run,
    set_session_budget,
    turns,
)
from orchestrator.store.steps import save_snapshot
from orchestrator.vocabulary import NodeKind, SessionStatus, Status

D = Decimal


def _session(sessions: sessionmaker[Session], *, budget: str | None = None, tenant_budget: str = "10") -> int:
    with sessions.begin() as s:
        create_tenant(s, "acme", D(tenant_budget))
        return create_session(
            s, "acme", "notes", model="m", sub_model="sm", budget=None if budget is None else D(budget)
        ).id


def _turn(sessions: sessionmaker[Session], sid: int, turn: int, question: str = "q") -> str:
    run_id = f"acme:notes:{turn}"
    with sessions.begin() as s:
        create_run(s, run_id, tenant="acme", status=Status.RUNNING)
        link_run(s, run_id, sid)
        assert add_turn(s, sid, turn, run_id=run_id, question=question)
    return run_id


def test_names_are_per_tenant_and_another_tenants_session_is_unknown(sessions: sessionmaker[Session]) -> None:
    _session(sessions)
    with sessions.begin() as s:
        create_tenant(s, "other", D(1))
        with pytest.raises(AlreadyExists):
            create_session(s, "acme", "notes", model="m", sub_model="sm")
        create_session(s, "other", "notes", model="x", sub_model="y")  # the same name, another tenant
    with sessions() as s:
        assert get_session(s, "acme", "notes").model == "m"
        assert get_session(s, "other", "notes").model == "x"
        with pytest.raises(NoSession, match="no session 'nope' for tenant 'acme'"):
            get_session(s, "acme", "nope")


def test_documents_turns_history_and_memory(sessions: sessionmaker[Session]) -> None:
    sid = _session(sessions)
    with sessions.begin() as s:
        assert add_document(s, sid, "a.txt", "alpha") == 1
        assert add_document(s, sid, "b/c.txt", "beta gamma") == 2
        assert add_document(s, sid, "r.jsonl:1", {"level": "ERROR", "id": 7}) == 3  # a JSON-lines record
    run1 = _turn(sessions, sid, 1, "first?")
    _turn(sessions, sid, 2, "second?")
    with sessions.begin() as s:
        finish_turn(s, sid, 1, status=Status.COMPLETED, answer="one", error=None)
        assert not add_turn(s, sid, 1, run_id="elsewhere", question="again")  # a retried registration
    with sessions() as s:
        assert documents(s, sid) == [
            ("a.txt", "alpha"),
            ("b/c.txt", "beta gamma"),
            ("r.jsonl:1", {"level": "ERROR", "id": 7}),  # the value again, as `--context` gives it
        ]
        assert history(s, sid, before=2) == [{"turn": 1, "question": "first?", "answer": "one"}]
        assert [(t.turn, t.status) for t in turns(s, sid)] == [(1, Status.COMPLETED), (2, Status.RUNNING)]
        assert get_session(s, "acme", "notes").turns == 2
        mem = memory(s, sid)
        assert (mem.documents, mem.chars, mem.bytes, mem.turns) == (3, 42, 42, 2)
        found = session_of_run(s, run1)
        assert found is not None and found[0].id == sid and found[1] == 1


def test_a_note_is_kept_once_per_key_and_long_notes_go_to_a_blob(sessions: sessionmaker[Session]) -> None:
    sid = _session(sessions)
    long = "x" * 5000
    with sessions.begin() as s:
        assert add_note(s, sid, 1, "first", key="n/1/0/1")
        assert not add_note(s, sid, 1, "first", key="n/1/0/1")  # the cell ran again
        assert add_note(s, sid, 1, long, key="n/1/0/2")
        assert add_note(s, sid, 2, "later", key="n2/1/0/1")
    with sessions() as s:
        assert notes(s, sid) == ["first", long, "later"]
        assert notes(s, sid, before=2) == ["first", long]
        assert memory(s, sid).notes == 3


def test_close_refuses_later_use(sessions: sessionmaker[Session]) -> None:
    _session(sessions)
    with sessions.begin() as s:
        row = get_session(s, "acme", "notes")
        assert close_session(s, row)
        assert not close_session(s, row)
    with sessions() as s:
        assert get_session(s, "acme", "notes").status == SessionStatus.CLOSED
        with pytest.raises(SessionClosed, match="is closed"):
            open_session(s, "acme", "notes")


def test_session_budget_refuses_and_ledger_sums_follow_it(sessions: sessionmaker[Session]) -> None:
    sid = _session(sessions, budget="0.10")
    run1, run2 = _turn(sessions, sid, 1), _turn(sessions, sid, 2)
    key = reserve(sessions, run_id=run1, tenant="acme", amount=D("0.06"), key="a")
    settle(sessions, key, D("0.05"))
    reserve(sessions, run_id=run2, tenant="acme", amount=D("0.04"), key="b")
    with pytest.raises(BudgetExhausted) as refused:
        reserve(sessions, run_id=run2, tenant="acme", amount=D("0.02"), key="c")
    assert (refused.value.scope, refused.value.name) == ("session", "notes")
    with sessions.begin() as s:
        set_session_budget(s, get_session(s, "acme", "notes"), D("0.11"))
    key_c = reserve(sessions, run_id=run2, tenant="acme", amount=D("0.02"), key="c")  # raised: it fits
    release(sessions, key_c)
    with sessions() as s:
        row = get_session(s, "acme", "notes")
        sums = ledger_sums(s, session_id=sid)
        assert (row.spent, row.reserved) == (sums.spent, sums.reserved) == (D("0.05"), D("0.04"))
        # The refused reservation held nothing anywhere.
        assert tenant_usage(s, "acme").reserved == D("0.04")


def test_concurrent_turns_never_overshoot_the_session_budget(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    """Four runs of one session race 200 reservations of $0.01 against its $0.50: exactly 50 fit."""
    sid = _session(sessions, budget="0.50", tenant_budget="100")
    runs = [_turn(sessions, sid, n) for n in range(1, 5)]
    n = 200
    barrier = threading.Barrier(n)
    violations: list[str] = []

    def attempt(i: int) -> bool:
        barrier.wait()
        try:
            with sessions() as s, s.begin():
                reserve(s, run_id=runs[i % 4], tenant="acme", amount=D("0.01"), key=f"k{i}")
                row = s.execute(select(RlmSession.spent_nanos, RlmSession.reserved_nanos)).one()
                if row.spent_nanos + row.reserved_nanos > 5 * 10**8:
                    violations.append(f"in-transaction {row}")
            return True
        except BudgetExhausted as exc:
            assert exc.scope == "session"
            return False

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(attempt, range(n)))
    assert violations == []
    assert sum(results) == 50
    with sessions() as s:
        row = get_session(s, "acme", "notes")
        assert row.reserved == D("0.50")
        sums = ledger_sums(s, session_id=sid)
        assert (row.spent, row.reserved) == (sums.spent, sums.reserved)


def test_prune_keeps_an_open_sessions_memory_and_last_turn(sessions: sessionmaker[Session]) -> None:
    sid = _session(sessions)
    with sessions.begin() as s:
        add_document(s, sid, "doc.txt", "a document")
        add_note(s, sid, 1, "n" * 5000, key="k1")
    refs: dict[str, str] = {}
    for turn in (1, 2):
        run_id = _turn(sessions, sid, turn, f"question {turn}")
        with sessions.begin() as s:
            node = f"{run_id}/0"
            upsert_node(s, node, run_id=run_id, kind=NodeKind.ROOT, depth=0, status=Status.RUNNING)
            refs[run_id] = put_text(s, f"snapshot of turn {turn}")
            save_snapshot(s, node, 1, refs[run_id])
            finish_node(s, node, status=Status.COMPLETED, answer_ref=None)
            set_run_status(s, run_id, Status.COMPLETED)
            finish_turn(s, sid, turn, status=Status.COMPLETED, answer=f"answer {turn}", error=None)
    with sessions.begin() as s:
        s.execute(update(Blob).values(last_put_at=utcnow() - timedelta(hours=2)))

    done = prune(sessions, older_than_s=0, recent_put=timedelta(0))
    assert done.runs == ["acme:notes:1"]  # the last turn stays: turn 3 restores its snapshot
    with sessions() as s:
        assert not blob_exists(s, refs["acme:notes:1"])
        assert blob_exists(s, refs["acme:notes:2"])
        assert s.scalar(select(func.count()).select_from(Snapshot)) == 1
        # Documents, notes, questions and answers all stay.
        assert documents(s, sid) == [("doc.txt", "a document")]
        assert notes(s, sid) == ["n" * 5000]
        assert [h["answer"] for h in history(s, sid, before=3)] == ["answer 1", "answer 2"]
    with sessions.begin() as s:
        close_session(s, get_session(s, "acme", "notes"))
    assert prune(sessions, older_than_s=0, recent_put=timedelta(0)).runs == ["acme:notes:2"]
