"""A node's workflow run takes a batch of sub-calls only while its history has room for them."""

from __future__ import annotations

import json

import pytest

from orchestrator.workflows.history_room import (
    ANSWER_BYTES,
    BLOB_NAME_BYTES,
    CHILD_WORKFLOW,
    INLINE_LEAF,
    MEMO_BYTES,
    HistoryCost,
    HistoryRoom,
    subcall_cost,
)
from orchestrator.workflows.types import Limits, Text

pytestmark = pytest.mark.fast

CHILD = HistoryCost(events=9, size=9_000)
RUN_BYTES = Limits().max_run_bytes


def test_a_batch_fits_while_the_history_with_the_sub_calls_under_way_stays_under_the_limit() -> None:
    room = HistoryRoom(max_events=1_000, max_bytes=RUN_BYTES)
    assert room.refusal(100, 50_000, CHILD, 50) is None  # 100 + 450 events
    # The first batch's sub-calls are still running: what they will add counts.
    refused = room.refusal(100, 50_000, CHILD, 51)  # 100 + 450 + 459
    assert refused is not None and room.full
    assert refused.startswith("this node's workflow run holds 100 history events (0.1 MB): 51 more sub-calls")
    assert "past the 1,000 events or 45 MB" in refused and "continues in a fresh run" in refused
    assert room.refusal(100, 50_000, CHILD, 50) is None  # exactly at the limit
    for _ in range(100):
        room.ended(CHILD)  # their events are in the history length from now on
    assert room.refusal(100, 50_000, CHILD, 100) is None


def test_inline_leaves_cost_fewer_events_and_the_size_limit_counts_too() -> None:
    prompts = [Text(inline="How many 'a'?\na a")] * 500
    inline, child = subcall_cost(INLINE_LEAF, prompts, []), subcall_cost(CHILD_WORKFLOW, prompts, [])
    assert (
        HistoryRoom(max_events=1_000, max_bytes=RUN_BYTES).refusal(0, 0, inline, 500) is None
    )  # 1,000 events inline
    assert (
        HistoryRoom(max_events=1_000, max_bytes=RUN_BYTES).refusal(0, 0, child, 500) is not None
    )  # 4,500 as children
    by_size = HistoryRoom(max_events=10**9, max_bytes=RUN_BYTES)
    assert by_size.refusal(10, RUN_BYTES - CHILD.size, CHILD, 1) is None
    assert by_size.refusal(10, RUN_BYTES - CHILD.size, CHILD, 1) is not None


def test_the_size_limit_is_the_runs_own() -> None:
    """A deployment whose server keeps smaller histories sets RLM_MAX_RUN_BYTES; the refusal names it."""
    room = HistoryRoom(max_events=10**9, max_bytes=2_500_000)
    assert room.refusal(10, 2_000_000, CHILD, 55) is None  # 2,495,000 bytes
    refused = room.refusal(10, 2_000_000, CHILD, 1)
    assert refused is not None and "past the 1,000,000,000 events or 2.5 MB" in refused


def test_a_sub_calls_bytes_follow_its_prompt_and_title_and_count_the_answer_at_its_worst() -> None:
    ascii_prompt, cjk_prompt = "Find /(a+)/\n" + "a" * 240, "Find /(答+)/\n" + "答" * 240
    ascii_cost = subcall_cost(INLINE_LEAF, [Text(inline=ascii_prompt)], [])
    cjk_cost = subcall_cost(INLINE_LEAF, [Text(inline=cjk_prompt)], [])
    # Six bytes a character when it is not ASCII, as Temporal's JSON writes it.
    assert cjk_cost.size - ascii_cost.size == len(json.dumps(cjk_prompt)) - len(json.dumps(ascii_prompt))
    assert ascii_cost.size == INLINE_LEAF.fixed_bytes + len(json.dumps(ascii_prompt)) + 2 * ANSWER_BYTES
    # A child's prompt is in the Update and in its input; its title in the Update, memo and summary.
    blob = subcall_cost(CHILD_WORKFLOW, [Text(blob="0" * 64)], ["Find /(a+)/"])
    expected = CHILD_WORKFLOW.fixed_bytes + 2 * BLOB_NAME_BYTES + len('"Find /(a+)/"')
    assert blob.size == expected + 2 * ANSWER_BYTES + 2 * MEMO_BYTES
    # A batch's cost is the mean of its sub-calls', rounded up: the pending total covers them all.
    mixed = subcall_cost(INLINE_LEAF, [Text(inline="ab"), Text(inline="abc")], [])
    assert mixed.size == INLINE_LEAF.fixed_bytes + 5 + 2 * ANSWER_BYTES
    assert mixed.events == INLINE_LEAF.events
