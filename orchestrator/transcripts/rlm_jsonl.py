"""A run's root trajectory in the JSON-lines format of the reference implementation's logger, so that its
visualizer opens durable-rlm runs.

The format is that of ``rlms`` 0.1.3 (alexzhang13/rlm): ``rlm/logger/rlm_logger.py`` writes a
``metadata`` line (``RLMMetadata.to_dict()`` plus ``type`` and ``timestamp``), then one ``iteration`` line
per model reply (``RLMIteration.to_dict()`` plus ``type``, ``iteration``, ``timestamp``); the types are
in ``rlm/core/types.py``. Each code cell is a ``CodeBlock`` whose ``REPLResult`` lists the cell's sub-calls
as ``rlm_calls`` (``RLMChatCompletion``). An iteration's ``prompt`` is the message list the model was sent,
rebuilt from the store as the ``generate`` activity builds it. REPL variables are not stored, so
``locals`` is empty. tests/reference/rlm_types_fields.json holds the field list the tests check.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.activities.compaction import history, messages_of
from orchestrator.activities.model import node_limits
from orchestrator.protocol.prompts import ContextInfo
from orchestrator.runs.start import root_input
from orchestrator.store.models import Node, Step
from orchestrator.store.steps import list_steps
from orchestrator.store.transcripts import child_nodes, children_first_steps, node_row
from orchestrator.transcripts.clips import FULL
from orchestrator.transcripts.load import TranscriptError, build
from orchestrator.transcripts.model import CellView, Iteration, Reply, SubcallView, Transcript, UnrecordedCell
from orchestrator.vocabulary import NodeKind, Status, StepKind
from orchestrator.workflows.types import NodeInput, root_id

FORMAT = "rlm-jsonl"
# durable-rlm calls models through litellm and runs cells in its Docker sandbox.
BACKEND = "litellm"
ENVIRONMENT = "docker"


def export_lines(sessions: sessionmaker[Session], run_id: str, tenant: str | None = None) -> list[str]:
    """The run's root trajectory, one JSON document per line (without newlines)."""
    with sessions() as session:
        row = node_row(session, root_id(run_id))
        if row is None:
            raise TranscriptError(
                f"no run {run_id!r} with a root node in this store; `rlm status RUN` checks"
            )
        if tenant is not None and row.tenant != tenant:
            raise TranscriptError(
                f"run {run_id!r} is not a run of tenant {tenant!r}; check the id and --tenant"
            )
        if row.run.pruned_at is not None:
            raise TranscriptError(
                f"run {run_id!r} was pruned (`rlm prune`): its steps are gone; nothing to export"
            )
        transcript = build(session, row, FULL)
        node = root_input(row.run, row.tenant)
        children = {c.node_id: c for c in child_nodes(session, row.node.node_id)}
        firsts = children_first_steps(session, row.node.node_id)
        times = {
            s.iteration: s.created_at
            for s in list_steps(session, row.node.node_id)
            if s.kind == StepKind.GENERATE
        }
        info = _context_info(transcript)
        query = transcript.query.text if transcript.query is not None else ""
        lines = [_metadata(node, row.node)]
        for it in transcript.iterations:
            if it.reply is None:
                continue  # the model has not answered it yet: the reference logs whole iterations only
            past = history(session, row.node.node_id, it.number)
            messages = messages_of(node_limits(node), query, info, past, forced_final=it.reply.forced_final)
            prompt = [{"role": m.role, "content": m.content} for m in messages]
            at = times.get(it.number) or row.node.created_at
            lines.append(_iteration(it, it.reply, transcript, prompt, at, children, firsts))
    return [json.dumps(line) for line in lines]


def _metadata(node: NodeInput, root: Node) -> dict[str, Any]:
    run = node.run
    return {
        "type": "metadata",
        "timestamp": root.created_at.isoformat(),
        "root_model": run.model,
        "max_depth": run.limits.max_depth,
        "max_iterations": run.limits.max_iterations,
        "backend": BACKEND,
        "backend_kwargs": {"model_name": run.model, "sub_model_name": run.sub_model},
        "environment_type": ENVIRONMENT,
        "environment_kwargs": {"leaf_mode": run.limits.leaf_mode.value},
        "other_backends": None,
    }


def _iteration(
    it: Iteration,
    reply: Reply,
    t: Transcript,
    prompt: list[dict[str, str]],
    at: datetime,
    children: dict[str, Node],
    firsts: dict[str, Step],
) -> dict[str, Any]:
    cells = [c for c in it.cells if c.status != UnrecordedCell.NOT_RUN]
    last = it.number == t.iterations[-1].number
    final = t.answer.text if last and t.answer is not None and t.node.status == Status.COMPLETED else None
    ms = (reply.duration_ms or 0) + sum(c.duration_ms or 0 for c in cells)
    return {
        "type": "iteration",
        "iteration": it.number,
        "timestamp": at.isoformat(),
        "prompt": prompt,
        "response": reply.text.text,
        "code_blocks": [{"code": c.code.text, "result": _result(c, children, firsts)} for c in cells],
        "final_answer": final,
        "iteration_time": ms / 1000,
    }


def _result(cell: CellView, children: dict[str, Node], firsts: dict[str, Step]) -> dict[str, Any]:
    stderr = cell.stderr.text
    if cell.error is not None:
        stderr = f"{stderr}\n{cell.error.text}" if stderr else cell.error.text
    return {
        "stdout": cell.stdout.text,
        "stderr": stderr,
        "locals": {},
        "execution_time": (cell.duration_ms or 0) / 1000,
        "rlm_calls": [_call(s, children, firsts) for s in cell.subcalls],
        "final_answer": cell.answer.text if cell.ready and cell.answer is not None else None,
    }


def _call(sub: SubcallView, children: dict[str, Node], firsts: dict[str, Step]) -> dict[str, Any]:
    child = children.get(sub.node_id or "")
    first = firsts.get(sub.node_id or "")
    model = (first.model if first is not None else None) or "unknown"
    if child is None:
        calls, prompt_tokens, completion_tokens = 0, 0, 0
    else:
        calls = (1 if first is not None else 0) if child.kind == NodeKind.LEAF else child.iterations
        prompt_tokens, completion_tokens = child.prompt_tokens, child.completion_tokens
    cost = float(sub.cost)
    out: dict[str, Any] = {
        "root_model": model,
        "prompt": sub.prompt.text if sub.prompt is not None else "",
        "response": sub.answer.text if sub.answer is not None else "",
        "usage_summary": {
            "model_usage_summaries": {
                model: {
                    "total_calls": calls,
                    "total_input_tokens": prompt_tokens,
                    "total_output_tokens": completion_tokens,
                    "total_cost": cost,
                }
            },
            "total_cost": cost,
        },
        "execution_time": (sub.duration_ms or 0) / 1000,
    }
    if sub.answer is None:
        out["error"] = sub.error or f"sub-call {sub.node_id} ended {sub.status}"
    return out


def _context_info(t: Transcript) -> ContextInfo:
    c = t.context
    if c is None:
        return ContextInfo.of_text(0)
    return ContextInfo(kind=c.kind, total_chars=c.chars, chunk_lengths=c.documents, names=c.names)
