"""`rlm prune` after real runs: the store shrinks, `rlm status` and `rlm tree` and the spend stay as
they were, and a pruned run's nodes can no longer be resumed."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select, update

from orchestrator.retention import prune
from orchestrator.runs import run_summary, run_tree
from orchestrator.store import create_tenant, list_steps, run_usage
from orchestrator.store.models import Blob, utcnow
from tests.ops.control.helpers import rlm, rlm_json
from tests.orchestrator.harness import Harness, word_context


def _stored(harness: Harness) -> int:
    with harness.sessions() as s:
        return int(s.scalar(select(func.coalesce(func.sum(Blob.stored_size), 0))) or 0)


async def test_prune_after_real_runs(harness: Harness, rlm_env: dict[str, str], tmp_path: Path) -> None:
    # A tenant of its own: the store holds the other tests' ended runs too.
    tenant = f"prune-{uuid.uuid4().hex[:8]}"
    with harness.sessions.begin() as s:
        create_tenant(s, tenant, Decimal(10))
    path, expected = word_context(tmp_path / "w.txt", 20_000)
    answered = await harness.run(
        "How many times does the word 'ERROR' appear? Use 4 chunks.",
        path,
        model="scripted/mapreduce",
        sub_model="scripted/leaf",
        tenant=tenant,
    )
    assert answered.summary.answer == str(expected)
    gave_up = await harness.run("Fails.", path, model="scripted/fail_badrequest", tenant=tenant)
    assert gave_up.summary.status == "failed"
    runs = [answered.summary.run_id, gave_up.summary.run_id]
    before = {r: (run_summary(harness.sessions, r), run_tree(harness.sessions, r)) for r in runs}
    with harness.sessions() as s:
        spent = {r: run_usage(s, r).spent for r in runs}
    size = _stored(harness)
    with harness.sessions.begin() as s:  # as if the runs had ended hours ago
        s.execute(update(Blob).values(last_put_at=utcnow() - timedelta(hours=2)))

    dry = await rlm_json(rlm_env, "prune", "--older-than", "0s", "--dry-run", "--tenant", tenant)
    assert sorted(dry["runs"]) == sorted(runs) and dry["steps"] > 0 and dry["dry_run"] is True
    assert _stored(harness) == size

    report = prune(harness.sessions, older_than_s=0, tenant=tenant, recent_put=timedelta(0))

    assert sorted(report.runs) == sorted(runs) and report.steps == dry["steps"]
    assert report.blob_bytes > 20_000  # at least the context (compressed) went
    assert _stored(harness) == size - report.blob_bytes
    for r in runs:
        assert (run_summary(harness.sessions, r), run_tree(harness.sessions, r)) == before[r]
        with harness.sessions() as s:
            assert run_usage(s, r).spent == spent[r]
            assert list_steps(s, f"{r}/0") == []

    code, out, err = await rlm(rlm_env, "resume", f"{gave_up.summary.run_id}/0")
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1].startswith(f"error: run {gave_up.summary.run_id} was pruned at ")

    code, out, err = await rlm(rlm_env, "prune", "--older-than", "yesterday")
    assert code == 1 and err.strip().splitlines()[-1].startswith("error: 'yesterday' is not a duration")
