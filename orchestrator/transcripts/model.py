"""The transcript of one node: what ``rlm show``, ``rlm show --json``, ``rlm report`` and ``rlm export``
are built from.

JSON shape (``Transcript.to_json()``; every key is always present, ``null`` when unknown)::

    {"node": {"node_id", "run_id", "tenant", "parent_id", "depth", "kind", "status", "model",
              "created_at", "finished_at" (ISO 8601 UTC or null), "duration_ms", "cost" (USD as a decimal
              string), "prompt_tokens", "completion_tokens", "error", "ended_because" (a sentence, null
              while the node has not ended)},
     "query": CLIP or null, "context": {"kind", "chars", "documents": [chars of each], "suffix",
                                            "names": [a corpus's document names]} or null,
     "iterations": [{"number", "reply": {"text": CLIP, "model", "prompt_tokens", "completion_tokens",
                     "cost", "duration_ms", "forced_final"} or null,
                     "compaction": {"first", "last" (the iterations summarised before this one's reply),
                                    "summary": CLIP, "model", "prompt_tokens", "completion_tokens", "cost",
                                    "duration_ms"} or null,
                     "cells": [{"index", "code": CLIP, "stdout": CLIP, "stderr": CLIP, "error": CLIP or null,
                                "status", "duration_ms", "chars_cut", "answer": CLIP or null, "ready",
                                "subcalls": [{"node_id", "kind" ("llm"|"rlm"), "prompt": CLIP or null,
                                              "answer": CLIP or null, "status", "cost", "error",
                                              "duration_ms"}]}]}],
     "answer": CLIP or null,
     "totals": {"iterations", "cells", "subcalls", "cost", "children_cost", "prompt_tokens",
                "completion_tokens"}}

A CLIP is a ``Clip`` (``orchestrator.transcripts.clips``). Every decimal amount is a string (exact).
A cell without a record has status ``running``, ``unfinished`` or ``not run`` (the ``UnrecordedCell``
values), its code from the model's reply and no output. ``from_json(to_json(t)) == t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from orchestrator.store.money import format_usd
from orchestrator.transcripts.clips import Clip, clip_json, read_clip


class UnrecordedCell(StrEnum):
    """A cell's status while it has no record (``CellView.status``); recorded cells carry the sandbox's."""

    RUNNING = "running"  # the node is still working on it
    UNFINISHED = "unfinished"  # the node ended (deadline, abort, failure) before the cell was recorded
    NOT_RUN = "not run"  # an earlier cell ended the node, or the node ended before it started


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _money(value: Decimal) -> str:
    return format_usd(value)


@dataclass(frozen=True)
class NodeView:
    node_id: str
    run_id: str
    tenant: str
    parent_id: str | None
    depth: int
    kind: str  # root, rlm, leaf (NodeKind)
    status: str  # Status
    model: str | None
    created_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None  # finished (or now, while running) minus created
    cost: Decimal  # the node's own model calls
    prompt_tokens: int
    completion_tokens: int
    error: str | None
    ended_because: str | None  # None while the node has not ended

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "run_id": self.run_id,
            "tenant": self.tenant,
            "parent_id": self.parent_id,
            "depth": self.depth,
            "kind": self.kind,
            "status": self.status,
            "model": self.model,
            "created_at": _time(self.created_at),
            "finished_at": _time(self.finished_at),
            "duration_ms": self.duration_ms,
            "cost": _money(self.cost),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
            "ended_because": self.ended_because,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeView:
        return cls(
            node_id=d["node_id"],
            run_id=d["run_id"],
            tenant=d["tenant"],
            parent_id=d["parent_id"],
            depth=d["depth"],
            kind=d["kind"],
            status=d["status"],
            model=d["model"],
            created_at=_parse_time(d["created_at"]),
            finished_at=_parse_time(d["finished_at"]),
            duration_ms=d["duration_ms"],
            cost=Decimal(d["cost"]),
            prompt_tokens=d["prompt_tokens"],
            completion_tokens=d["completion_tokens"],
            error=d["error"],
            ended_because=d["ended_because"],
        )


@dataclass(frozen=True)
class ContextView:
    """The context as the model was told of it: its type, size and the size of each document."""

    kind: str  # str, list, dict, documents (a corpus)
    chars: int
    documents: tuple[int, ...]
    suffix: str  # .txt, .json, .docs
    names: tuple[str, ...] = ()  # a corpus's document names

    def to_json(self) -> dict[str, Any]:
        documents = list(self.documents)
        names = list(self.names)
        return {
            "kind": self.kind,
            "chars": self.chars,
            "documents": documents,
            "suffix": self.suffix,
            "names": names,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ContextView:
        return cls(
            kind=d["kind"],
            chars=d["chars"],
            documents=tuple(d["documents"]),
            suffix=d["suffix"],
            names=tuple(d["names"]),
        )


@dataclass(frozen=True)
class SubcallView:
    """One sub-call a cell made: a child node (``node_id``; every sub-call has a node row, inline leaves
    too) with what it was asked and what it answered. ``node_id`` is None only for a child the store has
    no row of yet (just started)."""

    node_id: str | None
    kind: str  # llm (a leaf) or rlm (an RLM node) — SubcallKind
    prompt: Clip | None  # None when the store does not hold it (see load.py)
    answer: Clip | None
    status: str
    cost: Decimal  # the child's own model calls (its subtree's are on its own transcript)
    error: str | None
    duration_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "kind": self.kind,
            "prompt": clip_json(self.prompt),
            "answer": clip_json(self.answer),
            "status": self.status,
            "cost": _money(self.cost),
            "error": self.error,
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubcallView:
        return cls(
            node_id=d["node_id"],
            kind=d["kind"],
            prompt=read_clip(d["prompt"]),
            answer=read_clip(d["answer"]),
            status=d["status"],
            cost=Decimal(d["cost"]),
            error=d["error"],
            duration_ms=d["duration_ms"],
        )


@dataclass(frozen=True)
class CellView:
    index: int  # among its iteration's code blocks, 0-based
    code: Clip
    stdout: Clip
    stderr: Clip
    error: Clip | None  # traceback, or why the cell did not finish
    status: str  # the sandbox's (ok, error, timeout, oom, crashed), or an UnrecordedCell
    duration_ms: int | None
    chars_cut: int  # characters the sandbox cut from stdout/stderr before the model saw them
    answer: Clip | None  # what the cell set as the answer
    ready: bool  # that answer is final
    subcalls: tuple[SubcallView, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "code": self.code.to_json(),
            "stdout": self.stdout.to_json(),
            "stderr": self.stderr.to_json(),
            "error": clip_json(self.error),
            "status": self.status,
            "duration_ms": self.duration_ms,
            "chars_cut": self.chars_cut,
            "answer": clip_json(self.answer),
            "ready": self.ready,
            "subcalls": [s.to_json() for s in self.subcalls],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CellView:
        return cls(
            index=d["index"],
            code=Clip.from_json(d["code"]),
            stdout=Clip.from_json(d["stdout"]),
            stderr=Clip.from_json(d["stderr"]),
            error=read_clip(d["error"]),
            status=d["status"],
            duration_ms=d["duration_ms"],
            chars_cut=d["chars_cut"],
            answer=read_clip(d["answer"]),
            ready=d["ready"],
            subcalls=tuple(SubcallView.from_json(s) for s in d["subcalls"]),
        )


@dataclass(frozen=True)
class Reply:
    """The model's reply of one iteration and what it cost."""

    text: Clip
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    duration_ms: int | None
    forced_final: bool  # the request after the last iteration, asking for an answer without code

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text.to_json(),
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": _money(self.cost),
            "duration_ms": self.duration_ms,
            "forced_final": self.forced_final,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Reply:
        return cls(
            text=Clip.from_json(d["text"]),
            model=d["model"],
            prompt_tokens=d["prompt_tokens"],
            completion_tokens=d["completion_tokens"],
            cost=Decimal(d["cost"]),
            duration_ms=d["duration_ms"],
            forced_final=d["forced_final"],
        )


@dataclass(frozen=True)
class Compaction:
    """Iterations ``first``..``last`` replaced by a summary before an iteration's reply, and its cost."""

    first: int
    last: int
    summary: Clip
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    duration_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "last": self.last,
            "summary": self.summary.to_json(),
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": _money(self.cost),
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Compaction:
        return cls(
            first=d["first"],
            last=d["last"],
            summary=Clip.from_json(d["summary"]),
            model=d["model"],
            prompt_tokens=d["prompt_tokens"],
            completion_tokens=d["completion_tokens"],
            cost=Decimal(d["cost"]),
            duration_ms=d["duration_ms"],
        )


@dataclass(frozen=True)
class Iteration:
    number: int  # 1-based
    reply: Reply | None  # None: the model has not answered this iteration yet
    cells: tuple[CellView, ...]
    compaction: Compaction | None = None  # older iterations summarised before this one's reply

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "reply": None if self.reply is None else self.reply.to_json(),
            "compaction": None if self.compaction is None else self.compaction.to_json(),
            "cells": [c.to_json() for c in self.cells],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Iteration:
        reply, compaction = d["reply"], d.get("compaction")
        return cls(
            number=d["number"],
            reply=None if reply is None else Reply.from_json(reply),
            cells=tuple(CellView.from_json(c) for c in d["cells"]),
            compaction=None if compaction is None else Compaction.from_json(compaction),
        )


@dataclass(frozen=True)
class Totals:
    iterations: int
    cells: int
    subcalls: int
    cost: Decimal  # the node's own model calls
    children_cost: Decimal  # its direct children's own model calls
    prompt_tokens: int
    completion_tokens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "cells": self.cells,
            "subcalls": self.subcalls,
            "cost": _money(self.cost),
            "children_cost": _money(self.children_cost),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Totals:
        return cls(
            iterations=d["iterations"],
            cells=d["cells"],
            subcalls=d["subcalls"],
            cost=Decimal(d["cost"]),
            children_cost=Decimal(d["children_cost"]),
            prompt_tokens=d["prompt_tokens"],
            completion_tokens=d["completion_tokens"],
        )


@dataclass(frozen=True)
class Transcript:
    node: NodeView
    # Root: the run's query. RLM child: the query derived from its prompt (the prompt is its context).
    # Leaf: its prompt.
    query: Clip | None
    context: ContextView | None  # None for a leaf (no REPL) or when the store no longer holds it
    iterations: tuple[Iteration, ...]
    answer: Clip | None
    totals: Totals

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node.to_json(),
            "query": clip_json(self.query),
            "context": None if self.context is None else self.context.to_json(),
            "iterations": [i.to_json() for i in self.iterations],
            "answer": clip_json(self.answer),
            "totals": self.totals.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Transcript:
        context = d["context"]
        return cls(
            node=NodeView.from_json(d["node"]),
            query=read_clip(d["query"]),
            context=None if context is None else ContextView.from_json(context),
            iterations=tuple(Iteration.from_json(i) for i in d["iterations"]),
            answer=read_clip(d["answer"]),
            totals=Totals.from_json(d["totals"]),
        )
