"""A node's workflow run takes a batch of sub-calls only while its history has room for them."""

from __future__ import annotations

import pytest

from orchestrator.workflows.history_room import CHILD_WORKFLOW, INLINE_LEAF, MAX_RUN_BYTES, HistoryRoom

pytestmark = pytest.mark.fast


def test_a_batch_fits_while_the_history_with_the_sub_calls_under_way_stays_under_the_limit() -> None:
    room = HistoryRoom(max_events=1_000)
    assert room.refusal(100, 50_000, CHILD_WORKFLOW, 50) is None  # 100 + 450 events
    # The first batch's sub-calls are still running: what they will add counts.
    refused = room.refusal(100, 50_000, CHILD_WORKFLOW, 51)  # 100 + 450 + 459
    assert refused is not None and room.full
    assert refused.startswith("this node's workflow run holds 100 history events (0.1 MB): 51 more sub-calls")
    assert "past the 1,000 events or 45 MB" in refused and "continues in a fresh run" in refused
    assert room.refusal(100, 50_000, CHILD_WORKFLOW, 50) is None  # exactly at the limit
    for _ in range(100):
        room.ended(CHILD_WORKFLOW)  # their events are in the history length from now on
    assert room.refusal(100, 50_000, CHILD_WORKFLOW, 100) is None


def test_inline_leaves_cost_less_and_the_size_limit_counts_too() -> None:
    room = HistoryRoom(max_events=1_000)
    assert room.refusal(0, 0, INLINE_LEAF, 500) is None  # 1,000 events inline; 4,500 as children
    assert HistoryRoom(max_events=1_000).refusal(0, 0, CHILD_WORKFLOW, 500) is not None
    by_size = HistoryRoom(max_events=10**9)
    assert by_size.refusal(10, MAX_RUN_BYTES - CHILD_WORKFLOW.size, CHILD_WORKFLOW, 1) is None
    assert by_size.refusal(10, MAX_RUN_BYTES - CHILD_WORKFLOW.size, CHILD_WORKFLOW, 1) is not None
