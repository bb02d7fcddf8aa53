"""``ProgressReader``: a run's progress read in a few aggregate statements, on both store backends: nodes
by status, sub-calls, money against both budgets, and what the root and a paused node do now."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.cli.progress_view import plain_line, progress_every_s
from orchestrator.runs import RunError
from orchestrator.runs.progress import Doing, ProgressReader
from orchestrator.store import put_text, reserve, set_node_status, upsert_node, write_step
from orchestrator.vocabulary import NodeKind, Status, StepKind
from tests.store.conftest import seed

RUN = "run-1"
ROOT = f"{RUN}/0"
REPLY = "Two cells.\n```repl\nx = 1\n```\n```repl\nprint(llm_query_batched(['a', 'b']))\n```\n"
SPENT = "the run's budget is spent"


def _tree(sessions: sessionmaker[Session]) -> None:
    """A root in iteration 2 that ran its reply's first of two cells, with four sub-calls: one running,
    one paused for budget, one completed, one failed."""
    seed(sessions, budget="10", run_id=RUN, run_budget="1")
    with sessions.begin() as s:
        upsert_node(s, ROOT, run_id=RUN, kind=NodeKind.ROOT, depth=0, status=Status.RUNNING)
        children = [
            ("1", NodeKind.LEAF, Status.RUNNING),
            ("2", NodeKind.RLM, Status.PAUSED_BUDGET),
            ("3", NodeKind.LEAF, Status.COMPLETED),
            ("4", NodeKind.LEAF, Status.FAILED),
        ]
        for name, kind, status in children:
            upsert_node(s, f"{ROOT}.{name}", run_id=RUN, kind=kind, depth=1, parent_id=ROOT, status=status)
        set_node_status(s, f"{ROOT}.2", Status.PAUSED_BUDGET, error=f"{SPENT}\nraise it, then resume")
        for iteration in (1, 2):
            output = put_text(s, REPLY if iteration == 2 else "```repl\nx = 0\n```")
            write_step(s, ROOT, iteration, StepKind.GENERATE, 0, output_ref=output, cost=Decimal("0.25"))
            write_step(s, ROOT, iteration, StepKind.CELL, 0)
    reserve(sessions, run_id=RUN, tenant="acme", amount=Decimal("0.125"), key="held")


def test_a_tree_in_progress(sessions: sessionmaker[Session]) -> None:
    _tree(sessions)
    reader = ProgressReader(sessions, RUN)
    snap = reader.read()
    assert snap is not None
    assert (snap.nodes_running, snap.nodes_completed, snap.nodes_failed, snap.nodes_paused) == (2, 1, 1, 1)
    assert (snap.subcalls_finished, snap.subcalls_started) == (2, 4)
    assert (snap.reserved, snap.budget, snap.tenant, snap.tenant_budget) == (
        Decimal("0.125"),
        Decimal(1),
        "acme",
        Decimal(10),
    )
    assert snap.tenant_reserved == Decimal("0.125")
    assert snap.doing == (
        Doing("root", "iteration 2: running cell 2 of 2, waiting on 2 sub-calls"),
        Doing(f"{ROOT}.2", f"paused: budget ({SPENT})", paused=True),
    )
    line = plain_line(snap, datetime.now(UTC))
    assert line.startswith(f"progress run {RUN} · pending · ")
    assert "| nodes 2 running · 1 completed · 1 failed · 1 paused | sub-calls 2 of 4 finished |" in line
    assert "of run budget $1 · tenant acme" in line and "of $10" in line

    # The reply's last cell ran: the next model call is what the root waits for now.
    with sessions.begin() as s:
        write_step(s, ROOT, 2, StepKind.CELL, 1)
        set_node_status(s, f"{ROOT}.1", Status.COMPLETED)
    later = reader.read()
    assert later is not None
    assert later.doing[0] == Doing("root", "iteration 3: waiting for the model, waiting on 1 sub-call")
    assert (later.subcalls_finished, later.nodes_running) == (3, 1)


def test_an_unknown_run_reads_as_none(sessions: sessionmaker[Session]) -> None:
    assert ProgressReader(sessions, "no-such-run").read() is None


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), 86_401.0])
def test_progress_every_refuses_what_is_not_a_duration(seconds: float) -> None:
    with pytest.raises(RunError, match="--progress-every"):
        progress_every_s(seconds, quiet=False)
    assert progress_every_s(seconds, quiet=True) == 0.0


def test_the_cli_default_of_reconnect_for_is_the_runs_default() -> None:
    """The CLI repeats it so that `rlm --help` need not import the engine; the two must not drift."""
    from orchestrator.cli import job_cmds
    from orchestrator.runs import RECONNECT_S

    assert job_cmds.RECONNECT_S == RECONNECT_S
