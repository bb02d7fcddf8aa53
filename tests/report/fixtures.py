"""Report data without running anything: a synthetic run of any size in the shapes the store readers
return (``RunSummary``, ``TreeRow``, ``Transcript``), with hostile text where a model's output goes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from orchestrator.runs.inspect import RunSummary, TreeRow
from orchestrator.transcripts.clips import Cut
from orchestrator.transcripts.model import (
    CellView,
    Iteration,
    NodeView,
    Reply,
    SubcallView,
    Totals,
    Transcript,
)

# What a hostile cell might print: it must show up as text, and never run or load anything.
HOSTILE = (
    "</script><script>window.__pwned = 1</script><!-- <script>window.__pwned = 2</script> -->"
    '<img src=x onerror="window.__pwned = 3"> & {{js}} \u2028 </SCRIPT >'
)
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Synthetic:
    summary: RunSummary
    rows: list[TreeRow]
    transcripts: dict[str, Transcript]


def _node(node_id: str, parent: str | None, depth: int, kind: str, ms: int) -> NodeView:
    return NodeView(
        node_id=node_id,
        run_id="synth",
        tenant="acme",
        parent_id=parent,
        depth=depth,
        kind=kind,
        status="completed",
        model="scripted/recurse",
        created_at=START,
        finished_at=START + timedelta(milliseconds=ms),
        duration_ms=ms,
        cost=Decimal("0.000012"),
        prompt_tokens=120,
        completion_tokens=30,
        error=None,
        ended_because="answered",
    )


def _totals(iterations: int, cells: int, subcalls: int) -> Totals:
    return Totals(
        iterations=iterations,
        cells=cells,
        subcalls=subcalls,
        cost=Decimal("0.000012"),
        children_cost=Decimal("0.000024") if subcalls else Decimal(0),
        prompt_tokens=120,
        completion_tokens=30,
    )


def _rlm(node: NodeView, kids: list[str], cut: Cut, output: str, long_text: str) -> Transcript:
    calls = tuple(
        SubcallView(
            node_id=kid,
            kind="llm",
            prompt=cut.clip(f"Count ERROR in chunk {i}: alpha ERROR beta"),
            answer=cut.clip(str(i % 3)),
            status="completed",
            cost=Decimal("0.000001"),
            error=None,
            duration_ms=210,
        )
        for i, kid in enumerate(kids)
    )
    code = (
        "# split the context and ask a leaf per chunk\n"
        "chunks = [context[i:i + 1000] for i in range(0, len(context), 1000)]\n"
        'answers = llm_query_batched([f"Count ERROR in: {c}" for c in chunks])\n'
        'print(sum(int(a) for a in answers), "</script>")\n'
    )
    cell = CellView(
        index=0,
        code=cut.clip(code),
        stdout=cut.clip(output),
        stderr=cut.clip(long_text),
        error=None,
        status="ok",
        duration_ms=1234,
        chars_cut=0,
        answer=None,
        ready=False,
        subcalls=calls,
    )
    final = CellView(
        index=0,
        code=cut.clip('FINAL("42")'),
        stdout=cut.clip(""),
        stderr=cut.clip(""),
        error=None,
        status="ok",
        duration_ms=12,
        chars_cut=0,
        answer=cut.clip("42"),
        ready=True,
        subcalls=(),
    )
    reply = Reply(
        text=cut.clip("I will map over chunks.\n```repl\n" + code + "```"),
        model="scripted/recurse",
        prompt_tokens=100,
        completion_tokens=20,
        cost=Decimal("0.000006"),
        duration_ms=15,
        forced_final=False,
    )
    return Transcript(
        node=node,
        query=cut.clip("How many times does ERROR appear? " + output),
        context=None,
        iterations=(
            Iteration(number=1, reply=reply, cells=(cell,)),
            Iteration(number=2, reply=reply, cells=(final,)),
        ),
        answer=cut.clip(output),
        totals=_totals(2, 2, len(kids)),
    )


def synthetic(
    children: int, leaves_each: int, *, cut: Cut, output: str = HOSTILE, long_chars: int = 0
) -> Synthetic:
    """A root with ``children`` RLM nodes of ``leaves_each`` leaves each; every RLM cell prints ``output``
    and writes ``long_chars`` characters to stderr (to exercise cutting)."""
    long_text = "x" * long_chars
    rows: list[TreeRow] = []
    transcripts: dict[str, Transcript] = {}

    def add(node_id: str, parent: str | None, depth: int, kind: str, kids: list[str]) -> None:
        rows.append(
            TreeRow(
                node_id=node_id,
                parent_id=parent,
                depth=depth,
                kind=kind,
                status="completed",
                iterations=0 if kind == "leaf" else 2,
                cost=Decimal("0.000012"),
                answer_preview=output[:60] if kind != "leaf" else "1",
                error=None,
            )
        )
        node = _node(node_id, parent, depth, kind, 1500 + 10 * len(rows))
        if kind == "leaf":
            transcripts[node_id] = Transcript(
                node=node,
                query=cut.clip("Count ERROR in chunk: alpha ERROR beta"),
                context=None,
                iterations=(),
                answer=cut.clip("1"),
                totals=_totals(0, 0, 0),
            )
        else:
            transcripts[node_id] = _rlm(node, kids, cut, output, long_text)

    mids = [f"synth/0.{i}" for i in range(1, children + 1)]
    add("synth/0", None, 0, "root", mids)
    for mid in mids:
        leaves = [f"{mid}.{j}" for j in range(1, leaves_each + 1)]
        add(mid, "synth/0", 1, "rlm", leaves)
        for leaf in leaves:
            add(leaf, mid, 2, "leaf", [])
    summary = RunSummary(
        run_id="synth",
        status="completed",
        answer=output,
        error=None,
        cost=Decimal("0.012"),
        reserved=Decimal(0),
        prompt_tokens=120 * len(rows),
        completion_tokens=30 * len(rows),
        nodes=len(rows),
        wall_s=93.5,
    )
    return Synthetic(summary=summary, rows=rows, transcripts=transcripts)
