"""A batched reply too big for one Temporal payload (2 MB): past 1 MB of inline answers the node names
each answer's blob instead, and the cell still reads every answer whole. Real dev server, PostgreSQL,
Docker sandbox, litellm.

700 leaves answer 256 non-ASCII characters each, the most a leaf's answer carries inline: in Temporal's
JSON (six bytes a character) the reply would take 1.08 MB."""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import EventType

from orchestrator.vocabulary import LeafMode, Status
from orchestrator.workflows.types import Limits, text_sha256
from tests.ops.control.billing import assert_billed_once
from tests.orchestrator.harness import Harness

LEAVES = 700
ANSWER = "答" * 256
# Each prompt differs in its last line; each leaf's answer is the regex's match, 256 characters.
CODE = rf"""prompts = [
    "Find the regex /(答+)/ in the text after this line.\n" + "答" * 256 + "\n#" + str(i)
    for i in range({LEAVES})
]
answers = llm_query_batched(prompts)
FINAL(f"{{len(answers)}} answers, {{sum(a == '答' * 256 for a in answers)}} whole")"""


async def test_a_reply_past_one_megabyte_names_blobs_and_the_cell_reads_every_answer(
    harness: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("unused: the root's cell is its query")

    out = await harness.run(
        CODE,
        path,
        model="scripted/code",
        limits=Limits(leaf_mode=LeafMode.INLINE, max_subcalls=LEAVES, heartbeat_timeout_s=10),
        deadline_s=600,
    )

    assert out.result.status == Status.COMPLETED, out.result.error
    assert out.summary.answer == f"{LEAVES} answers, {LEAVES} whole"
    # The Update's result in the root's history named the blob, and stayed far below Temporal's limit.
    history = await harness.client.get_workflow_handle(out.result.node_id).fetch_history()
    replies = [
        e.workflow_execution_update_completed_event_attributes.outcome.success
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED
    ]
    (reply,) = replies
    data = b"".join(p.data for p in reply.payloads)
    assert text_sha256(ANSWER).encode() in data
    assert len(data) < 100_000
    assert_billed_once(harness.sessions, out.run_id)
