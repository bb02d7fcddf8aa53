"""Tenants, runs, nodes, steps and snapshots on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.store import (
    AlreadyExists,
    InvalidValue,
    NotFound,
    UnknownTenant,
    create_run,
    create_tenant,
    find_step,
    finish_node,
    get_node,
    get_run,
    get_tenant,
    latest_snapshot,
    list_nodes,
    list_runs,
    list_steps,
    list_tenants,
    put_blob,
    put_text,
    record_step,
    save_snapshot,
    set_node_status,
    set_run_status,
    set_tenant_budget,
    tenant_usage,
    upsert_node,
    write_step,
)
from orchestrator.store.models import Run, Step
from tests.store.conftest import seed

D = Decimal


def test_tenants(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", D("12.5"))
        create_tenant(s, "beta", D(0))
    with sessions.begin() as s, pytest.raises(AlreadyExists, match="set-budget"):
        create_tenant(s, "acme", D(1))
    with sessions.begin() as s:
        for bad in (D(-1), D("NaN")):
            with pytest.raises(InvalidValue):
                create_tenant(s, "gamma", bad)
        with pytest.raises(InvalidValue):
            create_tenant(s, "", D(1))
        with pytest.raises(UnknownTenant, match="rlm tenant create nobody"):
            set_tenant_budget(s, "nobody", D(1))
        set_tenant_budget(s, "beta", D("7"))
    with sessions() as s:
        assert [t.name for t in list_tenants(s)] == ["acme", "beta"]
        usage = tenant_usage(s, "acme")
        assert (usage.limit, usage.spent, usage.reserved, usage.remaining) == (
            D("12.5"),
            D(0),
            D(0),
            D("12.5"),
        )
        assert get_tenant(s, "beta").budget == D(7)
        with pytest.raises(UnknownTenant):
            get_tenant(s, "nobody")


def test_create_run_is_idempotent_by_run_id(sessions: sessionmaker[Session]) -> None:
    deadline = datetime.now(UTC) + timedelta(hours=1)
    with sessions.begin() as s:
        create_tenant(s, "acme", D(5))
        create_tenant(s, "beta", D(5))
        query = put_text(s, "how many?")
        run, created = create_run(
            s, "run-1", tenant="acme", query_ref=query, config={"max_depth": 1}, deadline=deadline
        )
        assert created and run.budget is None
        again, created_again = create_run(s, "run-1", tenant="acme", config={"other": True})
        assert not created_again and again.config == {"max_depth": 1}
        with pytest.raises(InvalidValue, match="another tenant"):
            create_run(s, "run-1", tenant="beta")
        with pytest.raises(UnknownTenant):
            create_run(s, "run-2", tenant="nobody")
        with pytest.raises(InvalidValue):
            create_run(s, "x" * 129, tenant="acme")
    with sessions() as s:
        run = get_run(s, "run-1")
        assert run.deadline == deadline and run.deadline.tzinfo is not None
        assert run.query_ref == query and run.status == "pending"
        with pytest.raises(NotFound):
            get_run(s, "nope")


def test_concurrent_create_run_creates_once(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", D(5))
    barrier = threading.Barrier(8)

    def go(_: int) -> bool:
        barrier.wait()
        with sessions.begin() as s:
            return create_run(s, "run-x", tenant="acme")[1]

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(go, range(8))) == [False] * 7 + [True]


def test_run_status(sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    with sessions.begin() as s:
        assert set_run_status(s, "run-1", "running").finished_at is None
        done = set_run_status(s, "run-1", "completed")
        assert done.status == "completed" and done.finished_at is not None
        with pytest.raises(InvalidValue, match="not known"):
            set_run_status(s, "run-1", "weird")
        with pytest.raises(NotFound):
            set_run_status(s, "nope", "running")


def test_list_runs_newest_first_by_tenant_status_and_start(sessions: sessionmaker[Session]) -> None:
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    with sessions.begin() as s:
        create_tenant(s, "acme", D("5"))
        create_tenant(s, "other", D("5"))
        for i, (tenant, status) in enumerate(
            [("acme", "completed"), ("other", "running"), ("acme", "failed"), ("acme", "running")]
        ):
            create_run(s, f"run-{i}", tenant=tenant)
            set_run_status(s, f"run-{i}", status)
            # Started an hour apart, in id order; the newest is run-3.
            s.execute(
                update(Run).where(Run.run_id == f"run-{i}").values(created_at=start + timedelta(hours=i))
            )
    with sessions() as s:

        def listed(**filters: object) -> list[tuple[str, str, str]]:
            return [(run.run_id, tenant, run.status) for run, tenant in list_runs(s, **filters)]  # type: ignore[arg-type]

        assert listed() == [
            ("run-3", "acme", "running"),
            ("run-2", "acme", "failed"),
            ("run-1", "other", "running"),
            ("run-0", "acme", "completed"),
        ]
        assert [r for r, _, _ in listed(tenant="acme")] == ["run-3", "run-2", "run-0"]
        assert [r for r, _, _ in listed(status="running")] == ["run-3", "run-1"]
        assert [r for r, _, _ in listed(tenant="acme", status="running")] == ["run-3"]
        assert [r for r, _, _ in listed(since=start + timedelta(hours=2))] == ["run-3", "run-2"]
        assert [r for r, _, _ in listed(limit=2)] == ["run-3", "run-2"]
        with pytest.raises(UnknownTenant):
            listed(tenant="nobody")
        with pytest.raises(InvalidValue, match="not known"):
            listed(status="weird")
        with pytest.raises(InvalidValue, match="limit must be 1 or more"):
            listed(limit=0)


def test_nodes_tree(sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    with sessions.begin() as s:
        upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0, status="running")
        root = get_node(s, "run-1/0")
        assert (root.workflow_id, root.status, root.parent_id) == ("run-1/0", "running", None)
        upsert_node(s, "run-1/0.1", run_id="run-1", kind="leaf", depth=1, parent_id="run-1/0")
        upsert_node(s, "run-1/0.0", run_id="run-1", kind="rlm", depth=1, parent_id="run-1/0")
        # A retried start is a no-op apart from the status it asks for.
        upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0, status="paused_budget")
        assert get_node(s, "run-1/0").status == "paused_budget"
        with pytest.raises(InvalidValue, match="exists as"):
            upsert_node(s, "run-1/0", run_id="run-1", kind="leaf", depth=0)
        with pytest.raises(InvalidValue, match="root, rlm or leaf"):
            upsert_node(s, "run-1/9", run_id="run-1", kind="tree", depth=0)
        set_node_status(s, "run-1/0.0", "running")
        answer = put_text(s, "42")
        finish_node(s, "run-1/0.1", answer_ref=answer)
        done = get_node(s, "run-1/0.1")
        assert done.status == "completed" and done.finished_at is not None and done.answer_ref == answer
        finish_node(s, "run-1/0.0", status="timed_out", error="deadline passed")
        assert get_node(s, "run-1/0.0").error == "deadline passed"
        with pytest.raises(InvalidValue, match="final status"):
            finish_node(s, "run-1/0", status="running")
    with sessions() as s:
        assert [n.node_id for n in list_nodes(s, "run-1")] == ["run-1/0", "run-1/0.0", "run-1/0.1"]
        assert get_node(s, "run-1/0.1").kind == "leaf"


def test_record_step_first_write_wins_and_counts_once(sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    with sessions.begin() as s:
        upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0)
        prompt = put_text(s, "prompt")
        first = record_step(
            s,
            "run-1/0",
            0,
            "generate",
            0,
            input_ref=prompt,
            model="openai/gpt-5-mini",
            prompt_tokens=100,
            completion_tokens=20,
            cost=D("0.000065"),
            duration_ms=1200,
            data={"blocks": 1},
        )
        again = record_step(s, "run-1/0", 0, "generate", 0, prompt_tokens=999, cost=D("9"))
        assert again.id == first.id and again.prompt_tokens == 100 and again.cost == D("0.000065")
        record_step(s, "run-1/0", 0, "execute", 0, summary="printed 3 lines")
        record_step(s, "run-1/0", 1, "generate", 0, prompt_tokens=5, cost=D("0.000001"))
        with pytest.raises(NotFound):
            record_step(s, "run-1/404", 0, "generate", 0)
    with sessions() as s:
        node = get_node(s, "run-1/0")
        assert (node.cost, node.prompt_tokens, node.completion_tokens) == (D("0.000066"), 105, 20)
        steps = list_steps(s, "run-1/0")
        assert [(st.iteration, st.kind, st.index) for st in steps] == [
            (0, "generate", 0),
            (0, "execute", 0),
            (1, "generate", 0),
        ]
        found = find_step(s, "run-1/0", 0, "generate", 0)
        assert found is not None and found.data == {"blocks": 1} and found.input_ref == prompt
        assert find_step(s, "run-1/0", 7, "generate", 0) is None


def test_upsert_node_and_write_step_say_whether_they_wrote(sessions: sessionmaker[Session]) -> None:
    """The leaf's hot path skips its "finished already?" lookup for a node it just created."""
    seed(sessions)
    with sessions.begin() as s:
        assert upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0)
        assert not upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0, status="running")
        assert write_step(s, "run-1/0", 0, "leaf", 0, prompt_tokens=7, cost=D("0.000002"))
        assert not write_step(s, "run-1/0", 0, "leaf", 0, prompt_tokens=70, cost=D("1"))
        with pytest.raises(NotFound):
            write_step(s, "run-1/404", 0, "leaf", 0)
    with sessions() as s:
        node = get_node(s, "run-1/0")
        assert (node.status, node.cost, node.prompt_tokens) == ("running", D("0.000002"), 7)
        step = find_step(s, "run-1/0", 0, "leaf", 0)
        assert step is not None and step.prompt_tokens == 7


def test_concurrent_step_writes_make_one_row(sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    with sessions.begin() as s:
        upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0)
    barrier = threading.Barrier(8)

    def go(i: int) -> int:
        barrier.wait()
        with sessions.begin() as s:
            return record_step(s, "run-1/0", 3, "generate", 0, prompt_tokens=10 + i, cost=D("0.001")).id

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(go, range(8)))) == 1
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Step)) == 1
        assert get_node(s, "run-1/0").cost == D("0.001")


def test_snapshots(sessions: sessionmaker[Session]) -> None:
    seed(sessions)
    with sessions.begin() as s:
        upsert_node(s, "run-1/0", run_id="run-1", kind="root", depth=0)
        assert latest_snapshot(s, "run-1/0") is None
        a, b, c = (put_blob(s, bytes([i]) * 10) for i in range(3))
        save_snapshot(s, "run-1/0", 0, a)
        save_snapshot(s, "run-1/0", 1, b)
        # A retried cell replaces the state recorded for that cell.
        assert save_snapshot(s, "run-1/0", 1, c).blob_sha == c
    with sessions() as s:
        latest = latest_snapshot(s, "run-1/0")
        assert latest is not None and (latest.cell, latest.blob_sha) == (1, c)
