"""A small synchronous RLM loop over the real sandbox (process backend) and the real litellm path.

It drives the protocol the way the orchestrator's workflows do (conversation -> complete -> parse ->
execute each block -> report), so the scripted policies are tested on the code they really write,
without Temporal. Sub-calls: ``llm`` prompts become leaf completions of the sub-model; ``rlm`` prompts
become child nodes (the prompt is the child's context, its first line the query) while depth allows.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.llm.complete import CompletionRequest, complete
from orchestrator.protocol.parse import forced_final_answer, parse_reply
from orchestrator.protocol.prompts import (
    CellReport,
    ChatMessage,
    ContextInfo,
    NodeLimits,
    Turn,
    child_query,
    conversation,
    leaf_messages,
)
from sandbox import CellResult, SandboxLimits, Session, SubcallRefused, SubcallRequest, open_session


@dataclass
class Sessions:
    opened: list[Session]

    def open(self, context_path: Path, limits: SandboxLimits = SandboxLimits()) -> Session:  # noqa: B008
        session = open_session(backend="process", context_path=context_path, limits=limits)
        self.opened.append(session)
        return session


@dataclass
class Tree:
    """What a whole run did: every node (depth, query), leaf completions, tokens."""

    nodes: list[tuple[int, str]] = field(default_factory=list)
    leaves: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class NodeOutcome:
    answer: str | None
    forced: bool
    iterations: int
    turns: list[Turn]


def context_info(path: Path) -> ContextInfo:
    """What the first message says about the context: the orchestrator computes the same from the store."""
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).parts)
        lengths = tuple(len(p.read_text()) for p in files)
        return ContextInfo(kind="list", total_chars=sum(lengths), chunk_lengths=lengths)
    if path.suffix == ".json":
        value = json.loads(path.read_text())
        return ContextInfo(
            kind=type(value).__name__, total_chars=len(path.read_text()), chunk_lengths=(len(value),)
        )
    return ContextInfo.of_text(len(path.read_text()))


def _report(code: str, result: CellResult) -> CellReport:
    error = None if result.status == "ok" else (result.traceback or result.message or result.status)
    return CellReport(code, result.stdout, result.stderr, error, result.stdout_cut + result.stderr_cut)


def _generate(model: str, messages: tuple[ChatMessage, ...], tree: Tree) -> str:
    result = asyncio.run(complete(CompletionRequest(model=model, messages=messages, max_tokens=4_000)))
    tree.prompt_tokens += result.prompt_tokens
    tree.completion_tokens += result.completion_tokens
    return result.text


def run_node(
    sessions: Sessions,
    tree: Tree,
    *,
    model: str,
    sub_model: str,
    query: str,
    context_path: Path,
    limits: NodeLimits,
    sandbox_limits: SandboxLimits = SandboxLimits(),  # noqa: B008
) -> NodeOutcome:
    tree.nodes.append((limits.depth, query))
    info = context_info(context_path)
    session = sessions.open(context_path, sandbox_limits)
    used = 0

    def on_subcall(request: SubcallRequest) -> list[str]:
        nonlocal used
        if used + len(request.prompts) > limits.max_subcalls:
            raise SubcallRefused(
                f"sub-call limit reached: {used} of {limits.max_subcalls} used, {len(request.prompts)} more "
                "asked; batch fewer, bigger chunks"
            )
        used += len(request.prompts)
        answers = []
        for prompt in request.prompts:
            if request.kind == "rlm" and limits.rlm_children_recurse:
                child_path = context_path.parent / f"child-{len(tree.nodes)}.txt"
                child_path.write_text(prompt)
                child = run_node(
                    sessions,
                    tree,
                    model=sub_model,
                    sub_model=sub_model,
                    query=child_query(prompt),
                    context_path=child_path,
                    limits=replace(limits, depth=limits.depth + 1),
                    sandbox_limits=sandbox_limits,
                )
                answers.append(child.answer or "")
            else:
                tree.leaves += 1
                answers.append(_generate(request.model or sub_model, leaf_messages(prompt), tree))
        return answers

    turns: list[Turn] = []
    for iteration in range(1, limits.max_iterations + 1):
        reply = _generate(model, conversation(limits, query, info, turns), tree)
        cells = []
        for block in parse_reply(reply).blocks:
            result = session.execute(block.code, on_subcall)
            cells.append(_report(block.code, result))
            if result.answer is not None and result.answer.ready:
                turns.append(Turn(reply, tuple(cells)))
                return NodeOutcome(result.answer.content, False, iteration, turns)
        turns.append(Turn(reply, tuple(cells)))
    reply = _generate(model, conversation(limits, query, info, turns, forced_final=True), tree)
    return NodeOutcome(forced_final_answer(reply), True, limits.max_iterations, turns)
