"""A hand-built transcript: a root whose one iteration ran a finished cell with two sub-calls and left a
second cell running."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from orchestrator.transcripts.clips import Clip, Cut
from orchestrator.transcripts.model import (
    CellView,
    ContextView,
    Iteration,
    NodeView,
    Reply,
    SubcallView,
    Totals,
    Transcript,
    UnrecordedCell,
)

LONG_STDOUT = "x" * 5_000


def sample(cut: Cut) -> Transcript:
    empty = Clip(text="", chars=0)
    subcalls = tuple(
        SubcallView(
            node_id=f"r1/0.{n}",
            kind="llm",
            prompt=cut.previewed(f"Count ERROR in chunk {n}\n" + "word " * 100),
            answer=cut.previewed(str(n * 7)),
            status="completed",
            cost=Decimal("0.000250000"),  # as the store gives it: nine places
            error=None,
            duration_ms=80 + n,
        )
        for n in (1, 2)
    )
    done = CellView(
        index=0,
        code=cut.clip("replies = llm_query_batched(prompts)\nprint(replies)"),
        stdout=cut.clip(LONG_STDOUT),
        stderr=empty,
        error=None,
        status="ok",
        duration_ms=340,
        chars_cut=12,
        answer=cut.maybe("21"),
        ready=False,
        subcalls=subcalls,
    )
    running = CellView(
        index=1, code=cut.clip("FINAL(answer)"), stdout=empty, stderr=empty, error=None,
        status=UnrecordedCell.RUNNING, duration_ms=None, chars_cut=0, answer=None, ready=False, subcalls=(),
    )  # fmt: skip
    reply = Reply(
        text=cut.clip("I will map.\n```repl\n...\n```"),
        model="scripted/mapreduce",
        prompt_tokens=700,
        completion_tokens=300,
        cost=Decimal("0.0011"),
        duration_ms=12,
        forced_final=False,
    )
    return Transcript(
        node=NodeView(
            node_id="r1/0",
            run_id="r1",
            tenant="acme",
            parent_id=None,
            depth=0,
            kind="root",
            status="running",
            model="scripted/mapreduce",
            created_at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
            finished_at=None,
            duration_ms=1_500,
            cost=Decimal("0.0011"),
            prompt_tokens=700,
            completion_tokens=300,
            error=None,
            ended_because=None,
        ),
        query=cut.maybe("How many times does ERROR appear? Use 2 chunks."),
        context=ContextView(kind="str", chars=12_000, documents=(12_000,), suffix=".txt"),
        iterations=(Iteration(number=1, reply=reply, cells=(done, running)),),
        answer=None,
        totals=Totals(
            iterations=1,
            cells=1,
            subcalls=2,
            cost=Decimal("0.0011"),
            children_cost=Decimal("0.0005"),
            prompt_tokens=700,
            completion_tokens=300,
        ),
    )
