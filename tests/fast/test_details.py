"""The Web UI's current details of a node count its sub-calls from a tally kept one change at a time."""

from __future__ import annotations

import random

import pytest

from orchestrator.vocabulary import Status
from orchestrator.workflows.details import ChildTally, node_details
from orchestrator.workflows.types import ChildState, Limits, NodeState

pytestmark = pytest.mark.fast


def test_a_tally_kept_change_by_change_equals_a_recount() -> None:
    rng = random.Random(7)
    statuses = [Status.RUNNING, Status.COMPLETED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED]
    states: dict[str, ChildState] = {}
    tally = ChildTally()
    for step in range(2_000):
        node_id = f"r/0.{rng.randrange(300)}"
        new = ChildState(node_id=node_id, status=rng.choice(statuses), cost_usd=str(step))
        tally.replace(states.get(node_id), new)
        states[node_id] = new
        assert tally == ChildTally.of(states.values())
    assert tally.running > 0 and tally.finished > tally.failed > 0


def test_the_details_show_the_tally() -> None:
    # The tally stands for the node's child_states: the details never walk the list themselves.
    state = NodeState(node_id="r/0", iteration=1, step="cell 1.0", children=40)
    shown = node_details(state, Limits(), ChildTally(running=12, finished=28, failed=3))
    assert "running cell 1.0, 12 sub-calls in flight" in shown
    assert "**Sub-calls** 28 of 40 finished, 3 without an answer" in shown
