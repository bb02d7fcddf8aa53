"""End-to-end runs on the real Temporal dev server, Docker sandbox and PostgreSQL store."""

from __future__ import annotations

from pathlib import Path

from orchestrator.workflows.types import Limits
from tests.orchestrator.harness import Harness, word_context

TEN_MILLION = 10_000_000


async def test_needle_in_ten_million_characters(harness: Harness, tmp_path: Path) -> None:
    block = "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 1000
    body = (block * (TEN_MILLION // len(block) + 1))[:TEN_MILLION]
    at = 7_345_678
    text = body[:at] + " The magic number is 904117. " + body[at:]
    path = tmp_path / "haystack.txt"
    path.write_text(text)
    assert len(text) > TEN_MILLION

    out = await harness.run("What is the magic number?", path, model="scripted/search")

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == "904117"
    assert out.summary.status == "completed"
    assert out.summary.cost > 0
    # The context reached the sandbox through the store and a file mount, never a payload.
    assert out.result.answer is not None and out.result.answer.inline == "904117"


async def test_map_reduce_over_100_chunks_counts_exactly(harness: Harness, tmp_path: Path) -> None:
    path, expected = word_context(tmp_path / "words.txt", 60_000)

    out = await harness.run(
        "How many times does the word 'ERROR' appear? Use 100 chunks.", path, model="scripted/mapreduce"
    )

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    leaves = [r for r in out.tree if r.kind == "leaf"]
    assert len(leaves) == 100
    assert all(r.status == "completed" for r in leaves)
    # Readable, deterministic child ids under the root.
    assert sorted(r.node_id.rsplit("/", 1)[1] for r in leaves) == sorted(f"0.{i}" for i in range(1, 101))
    assert sum(int(r.answer_preview or "0") for r in leaves) == expected


async def test_depth_two_tree_through_rlm_query(harness: Harness, tmp_path: Path) -> None:
    path, expected = word_context(tmp_path / "words.txt", 4_000)

    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model="scripted/recurse",
        limits=Limits(max_depth=2, heartbeat_timeout_s=10),
    )

    assert out.result.status == "completed", out.result.error
    assert out.summary.answer == str(expected)
    by_depth: dict[int, list[str]] = {}
    for row in out.tree:
        by_depth.setdefault(row.depth, []).append(row.kind)
    assert by_depth[0] == ["root"]
    assert by_depth[1] and all(k == "rlm" for k in by_depth[1])
    assert by_depth[2] and all(k == "rlm" for k in by_depth[2])
    # Depth is used up at 2: anything below is a plain leaf.
    assert all(k == "leaf" for d, kinds in by_depth.items() if d > 2 for k in kinds)
    assert all(r.status == "completed" for r in out.tree)
