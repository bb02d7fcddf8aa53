"""The pause note of a wait without progress: said when a run starts to wait for an operator, once
per pause."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from orchestrator.cli.progress_view import _PauseNotes, pause_note
from orchestrator.runs.progress import Doing, ProgressSnapshot

RUNNING = ProgressSnapshot(
    run_id="r1", status="running", started_at=datetime(2026, 1, 1, tzinfo=UTC), finished_at=None,
    nodes_running=3, nodes_completed=0, nodes_failed=0, nodes_paused=0, subcalls_started=2,
    subcalls_finished=0, spent=Decimal(0), reserved=Decimal(0), budget=Decimal("0.001"), tenant="default",
    tenant_spent=Decimal(0), tenant_reserved=Decimal(0), tenant_budget=Decimal(10),
    doing=(Doing("root", "iteration 1: running cell 1 of 1, waiting on 2 sub-calls"),),
)  # fmt: skip
PAUSED = replace(
    RUNNING,
    nodes_paused=1,
    doing=(*RUNNING.doing, Doing("r1/0.1", "paused: budget (run budget spent)", paused=True)),
)


def test_the_note_names_the_paused_node_and_what_to_do() -> None:
    assert pause_note(PAUSED) == (
        "run r1 waits for an operator: r1/0.1 paused: budget (run budget spent). `rlm resume r1` (after "
        "`rlm budget raise` for a budget), or `rlm abort r1`; this command waits until the run ends"
    )


def test_one_note_per_pause(capsys: pytest.CaptureFixture[str]) -> None:
    notes = _PauseNotes("r1")
    for snap in (RUNNING, None, PAUSED, PAUSED, PAUSED, RUNNING, PAUSED, PAUSED):
        notes.fresh(snap)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("waits for an operator") == 2, captured.err
