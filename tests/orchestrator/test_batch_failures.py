"""One failed sub-call no longer throws a batch away: ``llm_query_batched`` returns every answer that
exists and a marker in the failed item's place; a single ``llm_query`` that fails still raises; a
re-asked batch (what a retried cell sends) gets the same items back and starts nothing again.

The sub-model's context window is small, so the one long prompt's leaf fails for good (litellm's
ContextWindowExceededError) while the short ones answer. Real dev server, Docker, PostgreSQL, litellm.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from orchestrator.protocol import prompts
from orchestrator.store import list_nodes
from orchestrator.vocabulary import SubcallKind
from orchestrator.workflows import RLMNode
from orchestrator.workflows.types import (
    FAILED_ITEM_PREFIX,
    Limits,
    SubcallBatch,
    Text,
    failed_item,
    update_id,
)
from tests.conftest import LEAF_MECHANISMS
from tests.ops.control.billing import assert_billed_once
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness

SHORT_1 = "How many 'a'?\na a"
LONG = "How many 'a'?\n" + "a " * 400
SHORT_2 = "How many 'a'?\na"
PROMPTS = [SHORT_1, LONG, SHORT_2]
CODE = f"""r = llm_query_batched({PROMPTS!r})
try:
    llm_query({LONG!r})
    single = "no error"
except SubcallError as e:
    single = "raised: " + str(e)
print(single)
import time
time.sleep(8)  # the test re-asks the batch meanwhile
FINAL(repr(r + [single]))"""
SMALL_WINDOW = "scripted/leaf?context_window=60"


@pytest.mark.parametrize("leaf_mode", LEAF_MECHANISMS)
async def test_a_failed_item_is_marked_and_the_other_answers_kept(
    harness: Harness, tmp_path: Path, leaf_mode: str
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused")
    handle = await harness.start(
        CODE,
        path,
        model="scripted/code",
        sub_model=SMALL_WINDOW,
        limits=Limits(leaf_mode=leaf_mode, heartbeat_timeout_s=10),
    )
    run_id = handle.id.rsplit("/", 1)[0]

    def leaves() -> dict[str, str]:
        with harness.sessions() as s:
            return {n.node_id: n.status for n in list_nodes(s, run_id) if n.kind == "leaf"}

    async def four_ended() -> bool | None:
        found = leaves()
        return True if len(found) == 4 and "running" not in found.values() else None

    await eventually(four_ended, "the batch's three leaves and the single one ended")
    # What a retried cell sends: the same update id and prompts. The same items come back.
    batch = SubcallBatch(
        iteration=1, index=0, seq=1, kind=SubcallKind.LLM, prompts=[Text(inline=p) for p in PROMPTS]
    )
    again = await handle.execute_update(RLMNode.subcall, batch, id=update_id(handle.id, 1, 0, 1))
    assert again.error is None and again.failed == [1]
    assert [a.inline for a in again.answers][::2] == ["2", "1"]

    out = await asyncio.wait_for(harness.finish(handle), 90)

    assert out.result.status == "completed", out.result.error
    first, marked, second, single = ast.literal_eval(out.summary.answer or "")
    assert (first, second) == ("2", "1")
    assert marked.startswith(f"{FAILED_ITEM_PREFIX}{handle.id}.2 ended failed: ")
    assert "context" in marked.lower()
    assert single.startswith(f"raised: sub-call {handle.id}.4 ended failed: ")
    assert again.answers[1].inline == marked
    # Nothing was started or paid again for the re-asked batch.
    assert leaves() == {
        f"{handle.id}.1": "completed",
        f"{handle.id}.2": "failed",
        f"{handle.id}.3": "completed",
        f"{handle.id}.4": "failed",
    }
    assert assert_billed_once(harness.sessions, run_id) == out.summary.cost


def test_the_system_prompt_documents_the_marker_the_workflow_writes() -> None:
    marker = failed_item("run/0.3", "timed_out", "the run's deadline passed")
    assert marker == "Error: sub-call run/0.3 ended timed_out: the run's deadline passed"
    assert marker.startswith(prompts.FAILED_ITEM_PREFIX) and FAILED_ITEM_PREFIX == prompts.FAILED_ITEM_PREFIX
    text = prompts.system_prompt(prompts.NodeLimits())
    assert f'item.startswith("{prompts.FAILED_ITEM_PREFIX}")' in text
    assert "<id> ended <status>: <reason>" in text
