"""A transcript as terminal text (``rlm show``): the node, its query and context, each iteration's reply
and cells with their output and sub-calls, the answer, the totals and why the node ended."""

from __future__ import annotations

import textwrap
from decimal import Decimal

from orchestrator.protocol.prompts import SHOWN_NAMES
from orchestrator.transcripts.clips import Clip
from orchestrator.transcripts.model import CellView, Iteration, SubcallView, Transcript

INDENT = "    "


def render(t: Transcript) -> str:
    lines: list[str] = []
    n = t.node
    lines.append(f"node {n.node_id}  ({n.kind}, depth {n.depth}, run {n.run_id}, tenant {n.tenant})")
    lines.append(f"status {n.status}" + (f": {n.ended_because}" if n.ended_because else ""))
    facts = [f"model {n.model}" if n.model else None, f"cost {_usd(n.cost)}"]
    facts += [_tokens(n.prompt_tokens, n.completion_tokens), _ms(n.duration_ms)]
    lines.append(" · ".join(f for f in facts if f))
    if n.parent_id:
        lines.append(f"parent {n.parent_id}")
    lines.append("")
    _text(lines, "query", t.query, "")
    if t.context is not None:
        c = t.context
        docs = f", {_count(len(c.documents), 'document')}" if c.kind != "str" else ""
        lines.append(f"context: {c.kind}, {c.chars:,} chars{docs} ({c.suffix})")
        if c.names:
            more = f", ... and {len(c.names) - SHOWN_NAMES:,} more" if len(c.names) > SHOWN_NAMES else ""
            lines.append(f"  names: {', '.join(c.names[:SHOWN_NAMES])}{more}")
    for iteration in t.iterations:
        lines.append("")
        _iteration(lines, iteration)
    lines.append("")
    _text(lines, "answer", t.answer, "")
    tot = t.totals
    lines.append(
        f"totals: {_count(tot.iterations, 'iteration')}, {_count(tot.cells, 'cell')}, "
        f"{_count(tot.subcalls, 'sub-call')} · own cost "
        f"{_usd(tot.cost)}, direct sub-calls {_usd(tot.children_cost)} · "
        f"{_tokens(tot.prompt_tokens, tot.completion_tokens)}"
    )
    lines.append(f"ended: {n.ended_because}" if n.ended_because else f"still {n.status}")
    return "\n".join(lines) + "\n"


def _iteration(lines: list[str], it: Iteration) -> None:
    c = it.compaction
    if c is not None:
        facts = [c.model, _usd(c.cost), _tokens(c.prompt_tokens, c.completion_tokens), _ms(c.duration_ms)]
        lines.append(
            f"── compaction before iteration {it.number}: iterations {c.first}..{c.last} summarised · "
            + " · ".join(f for f in facts if f)
        )
        _text(lines, "summary", c.summary, INDENT)
    r = it.reply
    if r is None:
        lines.append(f"── iteration {it.number} (waiting for the model)")
    else:
        forced = " · forced final request" if r.forced_final else ""
        facts = [r.model, _usd(r.cost), _tokens(r.prompt_tokens, r.completion_tokens), _ms(r.duration_ms)]
        lines.append(f"── iteration {it.number}{forced} · " + " · ".join(f for f in facts if f))
        _text(lines, "reply", r.text, INDENT)
    for cell in it.cells:
        _cell(lines, it.number, cell)


def _cell(lines: list[str], number: int, c: CellView) -> None:
    facts = [c.status, _ms(c.duration_ms), _count(len(c.subcalls), "sub-call") if c.subcalls else None]
    lines.append(f"{INDENT}cell {number}.{c.index} · " + " · ".join(f for f in facts if f))
    inner = INDENT * 2
    _text(lines, "code", c.code, inner)
    if c.stdout.chars:
        _text(lines, "stdout", c.stdout, inner)
    if c.stderr.chars:
        _text(lines, "stderr", c.stderr, inner)
    if c.chars_cut:
        lines.append(f"{inner}({c.chars_cut:,} chars of output were cut before the model saw them)")
    if c.error is not None:
        _text(lines, "error", c.error, inner)
    if c.answer is not None:
        _text(lines, "answer (final)" if c.ready else "answer (partial)", c.answer, inner)
    for sub in c.subcalls:
        _subcall(lines, sub, inner)


def _subcall(lines: list[str], s: SubcallView, indent: str) -> None:
    facts = [s.kind, s.status, _usd(s.cost), _ms(s.duration_ms)]
    lines.append(f"{indent}→ {s.node_id or '(not recorded yet)'} · " + " · ".join(f for f in facts if f))
    inner = indent + INDENT
    _text(lines, "prompt", s.prompt, inner, missing="not in the store")
    _text(lines, "answer", s.answer, inner, missing=s.error or "none")


def _text(lines: list[str], label: str, clip: Clip | None, indent: str, missing: str = "none") -> None:
    if clip is None:
        lines.append(f"{indent}{label}: ({missing})")
        return
    lines.append(f"{indent}{label} ({clip.chars:,} chars):")
    body = clip.shown() or "(empty)"
    lines.append(textwrap.indent(body, indent + "  ", predicate=lambda _: True).rstrip("\n"))


def _usd(amount: Decimal) -> str:
    text = f"{amount.normalize():f}"
    return "$0" if text in ("0", "-0") else f"${text}"


def _tokens(prompt: int, completion: int) -> str:
    return f"{prompt:,} in / {completion:,} out tokens"


def _ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")
