"""``rlm show``: a map-reduce run and a depth-2 run show every cell's code and output and every sub-call
with its prompt and answer; ``--json`` round-trips; ``--iteration`` and ``--full``; a run shown while it
works, then killed mid-cell and restarted, reads as one coherent transcript."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from orchestrator.activities.cell_record import CellRecord
from orchestrator.runs.restart import restart
from orchestrator.store import get_text, list_nodes, list_steps
from orchestrator.transcripts.model import Transcript, UnrecordedCell
from orchestrator.workflows.types import Limits, NodeResult
from tests.cli.show_app import rlm
from tests.ops.control.helpers import eventually
from tests.orchestrator.harness import Harness, word_context

# A cell's code and output are printed at this indentation.
CELL_TEXT = " " * 10
SUBCALL_TEXT = " " * 14
QUERY = "How many times does the word 'ERROR' appear? Use 4 chunks."


def _round_trips(document: dict[str, object]) -> Transcript:
    transcript = Transcript.from_json(document)
    assert transcript.to_json() == document
    return transcript


def _shows(block: str, text: str, indent: str = CELL_TEXT) -> bool:
    """``block`` appears in ``text`` as ``rlm show`` prints texts: indented, whole."""
    return textwrap.indent(block.rstrip("\n"), indent, lambda _: True) in text


def _cells(harness: Harness, node_id: str) -> list[CellRecord]:
    with harness.sessions() as s:
        return [CellRecord.from_data(st.data) for st in list_steps(s, node_id) if st.kind == "cell"]


def _leaf_prompts(harness: Harness, run_id: str) -> dict[str, str]:
    with harness.sessions() as s:
        leaves = [n.node_id for n in list_nodes(s, run_id) if n.kind == "leaf"]
        steps = {leaf: list_steps(s, leaf) for leaf in leaves}
        return {leaf: get_text(s, st[0].input_ref or "") for leaf, st in steps.items()}


async def test_a_map_reduce_run_shows_every_cell_and_every_sub_call_with_its_prompt(
    harness: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    out = await harness.run(QUERY, path, model="scripted/mapreduce")
    root = f"{out.run_id}/0"

    shown = rlm(cli_env, "show", out.run_id)
    assert shown.code == 0, shown.err
    text = shown.out
    assert text.startswith(f"node {root}  (root, depth 0, run {out.run_id}, tenant default)")
    assert QUERY in text and "context: str, " in text
    cells = _cells(harness, root)
    assert cells
    for cell in cells:
        assert _shows(cell.code, text) and _shows(cell.stdout, text)
    prompts = _leaf_prompts(harness, out.run_id)
    assert len(prompts) == 4
    for leaf, prompt in prompts.items():
        assert f"→ {leaf} · llm · completed · $" in text
        assert f"prompt ({len(prompt):,} chars):" in text and prompt.splitlines()[0] in text
    assert f"\nanswer ({len(str(expected))} chars):\n  {expected}\n" in text
    assert text.rstrip().endswith("ended: answered")
    assert "more chars]" in text  # the chunk prompts are cut to their preview

    document = rlm(cli_env, "show", root, "--json").json()
    transcript = _round_trips(document)
    subcalls = [s for it in transcript.iterations for c in it.cells for s in c.subcalls]
    assert [s.node_id for s in subcalls] == sorted(prompts)
    for sub in subcalls:
        assert sub.prompt is not None and sub.prompt.chars == len(prompts[sub.node_id or ""])
        assert prompts[sub.node_id or ""].startswith(sub.prompt.text) and sub.prompt.more > 0
    assert transcript.answer is not None and transcript.answer.text == str(expected)
    assert transcript.node.ended_because == "answered" and transcript.totals.subcalls == 4
    assert transcript.totals.cost == out.summary.cost - transcript.totals.children_cost

    full = _round_trips(rlm(cli_env, "show", root, "--json", "--full").json())
    full_subcalls = [s for it in full.iterations for c in it.cells for s in c.subcalls]
    assert {s.node_id: s.prompt.text if s.prompt else None for s in full_subcalls} == prompts
    whole = rlm(cli_env, "show", root, "--full").out
    assert all(_shows(p, whole, SUBCALL_TEXT) for p in prompts.values())

    first = rlm(cli_env, "show", root, "--iteration", "1", "--json").json()
    assert [it["number"] for it in first["iterations"]] == [1]


async def test_a_depth_2_run_shows_rlm_children_and_their_own_transcripts(
    harness: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model="scripted/recurse",
        limits=Limits(max_depth=2, heartbeat_timeout_s=10),
    )
    assert out.summary.answer == str(expected)
    root, child = f"{out.run_id}/0", f"{out.run_id}/0.1"

    top = _round_trips(rlm(cli_env, "show", out.run_id, "--json").json())
    assert top.node.node_id == root
    subs = [s for it in top.iterations for c in it.cells for s in c.subcalls]
    assert [(s.node_id, s.kind, s.status) for s in subs] == [
        (child, "rlm", "completed"),
        (f"{out.run_id}/0.2", "rlm", "completed"),
    ]
    answers = [int(s.answer.text) for s in subs if s.answer is not None]
    assert sum(answers) == expected

    shown = rlm(cli_env, "show", child)
    assert shown.code == 0, shown.err
    assert f"node {child}  (rlm, depth 1" in shown.out and f"parent {root}" in shown.out
    for cell in _cells(harness, child):
        assert _shows(cell.code, shown.out) and _shows(cell.stdout, shown.out)
    for grandchild in (f"{child}.1", f"{child}.2"):
        assert f"→ {grandchild} · rlm · completed" in shown.out
        leaf = _round_trips(rlm(cli_env, "show", grandchild, "--json").json())
        assert leaf.node.depth == 2 and leaf.totals.subcalls == 0 and leaf.answer is not None
        assert leaf.iterations[0].cells[0].status == "ok"


async def test_rlm_children_show_their_prompt_and_query(
    harness: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 1_000)
    out = await harness.run(
        "How many times does the word 'ERROR' appear?", path, model="scripted/recurse",
        sub_model="scripted/recurse", limits=Limits(max_depth=1, heartbeat_timeout_s=10),
    )  # fmt: skip
    top = _round_trips(rlm(cli_env, "show", out.run_id, "--json").json())
    subs = [s for it in top.iterations for c in it.cells for s in c.subcalls]
    assert subs and all(s.prompt is not None and s.prompt.text.startswith("Count the matches") for s in subs)
    child = _round_trips(rlm(cli_env, "show", f"{out.run_id}/0.1", "--json").json())
    assert child.query is not None and child.query.text.startswith("Count the matches")
    assert child.context is not None and child.context.chars == (
        subs[0].prompt.chars if subs[0].prompt else 0
    )


async def test_a_run_shown_while_it_works_then_killed_and_restarted_reads_coherently(
    harness: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 3_000)
    handle = await harness.start(
        "How many times does the word 'ERROR' appear? Use 5 chunks.",
        path,
        model="scripted/mapreduce?parallel=0",  # one llm_query after the other
        sub_model="scripted/leaf?latency_ms=400",
    )
    run_id = handle.id.rsplit("/", 1)[0]

    async def two_done() -> Transcript | None:
        t = _round_trips(rlm(cli_env, "show", run_id, "--json").json())
        subs = [s for it in t.iterations for c in it.cells for s in c.subcalls if s.status == "completed"]
        return t if len(subs) >= 2 else None

    live = await eventually(two_done, "two finished sub-calls in the live transcript")
    assert live.node.status == "running" and live.node.ended_because is None
    cell = live.iterations[-1].cells[0]
    assert cell.status == UnrecordedCell.RUNNING and cell.code.chars > 0 and cell.stdout.chars == 0
    assert [s.node_id for s in cell.subcalls][:2] == [f"{handle.id}.1", f"{handle.id}.2"]
    assert "still running" in rlm(cli_env, "show", run_id).out

    await handle.terminate("test: the node dies mid-cell")
    await restart(harness.client, harness.sessions, await handle.describe())
    latest = harness.client.get_workflow_handle(handle.id, result_type=NodeResult)
    result = await asyncio.wait_for(latest.result(), 90)
    assert result.status == "completed"

    after = _round_trips(rlm(cli_env, "show", run_id, "--json").json())
    assert after.node.status == "completed" and after.node.ended_because == "answered"
    assert after.answer is not None and after.answer.text == str(expected)
    first = after.iterations[0]
    assert [c.status for c in first.cells] == ["ok"]
    # The re-run cell re-asked the same sub-calls under the same ids: five children, each once.
    assert [s.node_id for s in first.cells[0].subcalls] == [f"{handle.id}.{n}" for n in range(1, 6)]
    assert all(s.status == "completed" and s.prompt is not None for s in first.cells[0].subcalls)
    assert after.totals.subcalls == 5 and after.totals.cells == len(_cells(harness, handle.id))
