"""The history room's estimate of a sub-call covers what a sub-call really adds to its node's history,
for prompts and answers near the inline limit, ASCII or not (six bytes a character in Temporal's JSON).
Real dev server, PostgreSQL, Docker sandbox, litellm."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.vocabulary import LeafMode, Status
from orchestrator.workflows.history_room import CHILD_WORKFLOW, INLINE_LEAF, subcall_cost
from orchestrator.workflows.types import Limits, Text
from tests.conftest import LEAF_MECHANISMS
from tests.orchestrator.harness import Harness

LEAVES = 60
TITLE = "Find /({c}+)/ after this line."
# Each leaf's answer is the run of 220 characters after the instruction: prompts of 250 characters.
CODE = r"""prompts = ["Find /({c}+)/ after this line.\n" + "{c}" * 220 + "#" + str(i) for i in range({n})]
answers = llm_query_batched(prompts)
FINAL(str(sum(len(a) for a in answers)))"""


async def _history(harness: Harness, path: Path, code: str, leaf_mode: LeafMode) -> tuple[int, int]:
    out = await harness.run(
        code,
        path,
        model="scripted/code",
        limits=Limits(leaf_mode=leaf_mode, max_subcalls=LEAVES, heartbeat_timeout_s=10),
        deadline_s=600,
    )
    assert out.result.status == Status.COMPLETED, out.result.error
    history = await harness.client.get_workflow_handle(out.result.node_id).fetch_history()
    return len(history.events), sum(e.ByteSize() for e in history.events)


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_the_estimate_covers_what_each_sub_call_adds(
    harness: Harness, tmp_path: Path, leaf_mode: LeafMode
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused: the root's cell is its query")
    shape = INLINE_LEAF if leaf_mode == LeafMode.INLINE else CHILD_WORKFLOW
    base_events, base_bytes = await _history(harness, path, 'FINAL("none")', leaf_mode)
    for char in ("a", "答"):
        events, size = await _history(harness, path, CODE.format(c=char, n=LEAVES), leaf_mode)
        prompts = [Text(inline=TITLE.format(c=char) + "\n" + char * 220 + f"#{i}") for i in range(LEAVES)]
        cost = subcall_cost(shape, prompts, [TITLE.format(c=char)] * LEAVES)
        per_event, per_byte = (events - base_events) / LEAVES, (size - base_bytes) / LEAVES
        assert per_event <= cost.events, (char, per_event, cost)
        assert per_byte <= cost.size, (char, per_byte, cost)
        # The answer is counted at its worst (256 characters, none ASCII): for ASCII texts the estimate is
        # about three times what they take, no more (a batch takes at most 5,000 prompts, so one batch
        # of inline leaves is estimated at 22 MB at most, under the 45 MB a run keeps to).
        assert per_byte * 4 >= cost.size, (char, per_byte, cost)
