"""Retention on both backends: what `prune` removes of ended runs, and what it must keep — run and node
summaries, the ledger, blobs other rows still reference, and blobs a live run stored again lately."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import RlmError
from orchestrator.retention import prune
from orchestrator.settings import SettingsError, load_settings
from orchestrator.store import (
    blob_exists,
    create_run,
    create_tenant,
    finish_node,
    get_run,
    list_steps,
    put_text,
    record_step,
    reserve,
    run_usage,
    set_run_status,
    settle,
    upsert_node,
)
from orchestrator.store.models import Blob, Snapshot, utcnow
from orchestrator.store.steps import save_snapshot
from orchestrator.vocabulary import Status, StepKind

NOW = timedelta(0)  # blobs count as stored long ago (the real default keeps the last hour's)


def _run(
    sessions: sessionmaker[Session], run_id: str, tenant: str = "acme", *, shared: str = "shared"
) -> dict[str, str]:
    """A run with a root that made one model call and ran one cell: every kind of row that refers to
    a blob. Returns the blobs by role."""
    with sessions.begin() as s:
        create_run(s, run_id, tenant=tenant)  # a run stores its blobs after it began
        blobs = {
            "query": put_text(s, f"query of {run_id}"),
            "context": put_text(s, f"context of {run_id} " * 100),
            "prompt": put_text(s, f"prompt of {run_id}"),
            "reply": put_text(s, f"reply of {run_id}"),
            "snapshot": put_text(s, f"snapshot of {run_id}"),
            "answer": put_text(s, f"answer of {run_id}"),
            "shared": put_text(s, shared),
        }
        run = get_run(s, run_id)
        run.query_ref, run.context_ref = blobs["query"], blobs["context"]
        node = f"{run_id}/0"
        upsert_node(s, node, run_id=run_id, kind="root", depth=0, status=Status.RUNNING)
        record_step(s, node, 1, StepKind.GENERATE, 0, input_ref=blobs["prompt"], output_ref=blobs["reply"],
                    cost=Decimal("0.01"), prompt_tokens=10, completion_tokens=5)  # fmt: skip
        record_step(s, node, 1, StepKind.CELL, 0, input_ref=blobs["shared"])
        save_snapshot(s, node, 1, blobs["snapshot"])
    key = reserve(sessions, run_id=run_id, tenant=tenant, amount=Decimal("0.05"), key=f"{run_id}-gen")
    settle(sessions, key, Decimal("0.01"))
    return blobs


def _end(sessions: sessionmaker[Session], run_id: str, status: Status = Status.COMPLETED) -> None:
    with sessions.begin() as s:
        finish_node(s, f"{run_id}/0", status=status, answer_ref=None)
        set_run_status(s, run_id, status)


def _stored_long_ago(sessions: sessionmaker[Session]) -> None:
    """Every blob so far was last stored two hours ago."""
    with sessions.begin() as s:
        s.execute(update(Blob).values(last_put_at=utcnow() - timedelta(hours=2)))


def _stored(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.stored_size), 0))) or 0)


def test_prune_removes_steps_snapshots_and_unused_blobs_and_keeps_summaries(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", Decimal("10"))
    old = _run(sessions, "old")
    with sessions.begin() as s:
        finish_node(s, "old/0", answer_ref=old["answer"])
        set_run_status(s, "old", Status.COMPLETED)
    _stored_long_ago(sessions)
    live = _run(sessions, "live")  # still running: stores "shared" again, after "old" stored it
    with sessions() as s:
        spent_before = (run_usage(s, "old").spent, run_usage(s, "live").spent)
    size_before = _stored(sessions)

    dry = prune(sessions, older_than_s=0, dry_run=True, recent_put=NOW)
    assert (dry.runs, dry.steps, dry.snapshots) == (["old"], 2, 1)
    # The context, prompt, reply and snapshot go; the query, answer and the blob the live run uses stay.
    assert dry.blobs == 4 and dry.blob_bytes > 0
    assert _stored(sessions) == size_before  # a dry run changes nothing
    with sessions() as s:
        assert len(list_steps(s, "old/0")) == 2

    done = prune(sessions, older_than_s=0, recent_put=NOW)
    assert (done.runs, done.steps, done.snapshots, done.blobs, done.blob_bytes) == (
        dry.runs, dry.steps, dry.snapshots, dry.blobs, dry.blob_bytes,
    )  # fmt: skip
    assert _stored(sessions) == size_before - done.blob_bytes
    with sessions() as s:
        run = get_run(s, "old")
        assert run.pruned_at is not None and run.context_ref is None and run.status == Status.COMPLETED
        assert list_steps(s, "old/0") == []
        assert s.scalar(select(func.count()).select_from(Snapshot).where(Snapshot.node_id == "old/0")) == 0
        for role in ("context", "prompt", "reply", "snapshot"):
            assert not blob_exists(s, old[role]), role
        for role in ("query", "answer", "shared"):
            assert blob_exists(s, old[role]), role
        # The live run lost nothing; spend reports are unchanged.
        assert len(list_steps(s, "live/0")) == 2 and all(blob_exists(s, sha) for sha in live.values())
        assert (run_usage(s, "old").spent, run_usage(s, "live").spent) == spent_before

    again = prune(sessions, older_than_s=0, recent_put=NOW)
    assert (again.runs, again.steps, again.blobs) == ([], 0, 0)


def test_a_blob_a_live_run_stored_again_stays_though_no_row_references_it(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", Decimal("10"))
    old = _run(sessions, "old", shared="only the old run's rows name me")
    _end(sessions, "old")
    _stored_long_ago(sessions)
    with sessions.begin() as s:
        create_run(s, "live", tenant="acme", status=Status.RUNNING)
        # A live run's child gets the same prompt: it travels in a workflow input, not in a row.
        put_text(s, "only the old run's rows name me")

    prune(sessions, older_than_s=0, recent_put=NOW)

    with sessions() as s:
        assert blob_exists(s, old["shared"])
        assert not blob_exists(s, old["prompt"])


def test_prune_leaves_live_young_and_other_tenants_runs(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", Decimal("10"))
        create_tenant(s, "other", Decimal("10"))
    _run(sessions, "running")
    _run(sessions, "paused")
    with sessions.begin() as s:
        set_run_status(s, "paused", Status.PAUSED_BUDGET)
    _run(sessions, "restarted")  # ended, but one of its nodes was restarted and runs again
    with sessions.begin() as s:
        set_run_status(s, "restarted", Status.FAILED)
    _run(sessions, "theirs", tenant="other")
    _end(sessions, "theirs")
    _run(sessions, "mine")
    _end(sessions, "mine", Status.FAILED)

    assert prune(sessions, older_than_s=3600, recent_put=NOW).runs == []  # none ended an hour ago
    assert prune(sessions, older_than_s=0, tenant="acme", recent_put=NOW).runs == ["mine"]
    assert prune(sessions, older_than_s=0, recent_put=NOW).runs == ["theirs"]
    with sessions() as s:
        for run_id in ("running", "paused", "restarted"):
            assert get_run(s, run_id).pruned_at is None
            assert len(list_steps(s, f"{run_id}/0")) == 2


def test_bad_input(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(RlmError, match="tenant"):
        prune(sessions, older_than_s=0, tenant="nobody")
    with pytest.raises(RlmError, match="must not be negative"):
        prune(sessions, older_than_s=-1)


def test_a_running_node_keeps_its_last_three_snapshots(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", Decimal("10"))
        create_run(s, "run", tenant="acme", status=Status.RUNNING)
        upsert_node(s, "run/0", run_id="run", kind="root", depth=0, status=Status.RUNNING)
        upsert_node(s, "run/0.1", run_id="run", kind="rlm", depth=1, parent_id="run/0", status=Status.RUNNING)
        states = [put_text(s, f"REPL state after cell {n}") for n in range(1, 6)]
        save_snapshot(s, "run/0.1", 1, states[0])  # another node's REPL ended up the same
        for cell, sha in enumerate(states, start=1):
            save_snapshot(s, "run/0", cell, sha)
    with sessions() as s:
        kept = s.scalars(select(Snapshot.cell).where(Snapshot.node_id == "run/0").order_by(Snapshot.cell))
        assert list(kept) == [3, 4, 5]
        assert blob_exists(s, states[0])  # still named by the other node's snapshot
        assert not blob_exists(s, states[1])
        assert all(blob_exists(s, sha) for sha in states[2:])


@pytest.mark.parametrize(("keep", "kept"), [(1, [5]), (0, [1, 2, 3, 4, 5])])
def test_keep_snapshots_is_configurable_and_zero_keeps_all(
    sessions: sessionmaker[Session], keep: int, kept: list[int]
) -> None:
    with sessions.begin() as s:
        create_tenant(s, "acme", Decimal("10"))
        create_run(s, "run", tenant="acme", status=Status.RUNNING)
        upsert_node(s, "run/0", run_id="run", kind="root", depth=0, status=Status.RUNNING)
        for cell in range(1, 6):
            save_snapshot(s, "run/0", cell, put_text(s, f"state {cell}"), keep=keep)
    with sessions() as s:
        found = s.scalars(select(Snapshot.cell).where(Snapshot.node_id == "run/0").order_by(Snapshot.cell))
        assert list(found) == kept


def test_rlm_keep_snapshots_setting() -> None:
    assert load_settings({}).keep_snapshots == 3
    assert load_settings({"RLM_KEEP_SNAPSHOTS": "10"}).keep_snapshots == 10
    with pytest.raises(SettingsError, match="RLM_KEEP_SNAPSHOTS='-1' must be a whole number"):
        load_settings({"RLM_KEEP_SNAPSHOTS": "-1"})
