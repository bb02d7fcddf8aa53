"""Compaction of a node's conversation: the summary request and the compacted conversation.

When a node's next prompt nears its model's context window, its older iterations are replaced by a
summary the node's own model writes (``summary_request``). The compacted conversation
(``compacted_conversation``) is then: the system prompt, the first user message (query and context
shape), one user message holding the summary of iterations 1..k, and the later iterations verbatim
(keeping their own numbers). A later compaction summarises the previous summary plus newer
iterations, so a summary always covers iterations 1..k. The REPL is untouched: the variables named in
the summary still hold their values.

Pure: no I/O. ``read_*`` recover the machine-readable parts, for the scripted model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.protocol.prompts import (
    ChatMessage,
    ContextInfo,
    NodeLimits,
    Turn,
    first_user_message,
    forced_final_message,
    iteration_message,
    system_prompt,
)

# The system message of a summary request starts with this (the scripted model recognises it).
SUMMARY_MARKER = "You compact the working history of a recursive language model (RLM) node."
# Iterations kept verbatim after the summary, so the model keeps its most recent working context.
KEEP_RECENT = 2
SUMMARISE = "Summarise iterations"
_SUMMARY_HEADER = re.compile(
    r"^Summary of iterations 1\.\.(?P<last>\d+) \(older iterations were compacted\):"
)


@dataclass(frozen=True)
class Summary:
    """A recorded compaction: ``text`` summarises iterations 1..``last``."""

    last: int
    text: str


@dataclass(frozen=True)
class NumberedTurn:
    number: int  # the iteration (1-based)
    turn: Turn


def summary_message(summary: Summary) -> str:
    return (
        f"Summary of iterations 1..{summary.last} (older iterations were compacted):\n{summary.text}\n\n"
        "The REPL still holds every variable those iterations set; continue from here."
    )


def read_compacted(text: str) -> int | None:
    """The last iteration a ``summary_message`` covers, or None for any other text."""
    found = _SUMMARY_HEADER.match(text)
    return int(found.group("last")) if found else None


def compacted_conversation(
    limits: NodeLimits,
    query: str,
    context: ContextInfo,
    summary: Summary | None,
    turns: Sequence[NumberedTurn],
    *,
    forced_final: bool = False,
) -> tuple[ChatMessage, ...]:
    """``prompts.conversation`` with iterations 1..``summary.last`` replaced by the summary."""
    messages = [
        ChatMessage("system", system_prompt(limits)),
        ChatMessage("user", first_user_message(query, context)),
    ]
    if summary is not None:
        messages.append(ChatMessage("user", summary_message(summary)))
    for numbered in turns:
        if summary is not None and numbered.number <= summary.last:
            continue
        messages.append(ChatMessage("assistant", numbered.turn.reply))
        messages.append(ChatMessage("user", iteration_message(numbered.number, numbered.turn.cells, limits)))
    if forced_final:
        messages.append(ChatMessage("user", forced_final_message()))
    return tuple(messages)


def to_cover(summary: Summary | None, turns: Sequence[NumberedTurn]) -> list[NumberedTurn]:
    """The not yet summarised turns a compaction now would fold in: all but the last ``KEEP_RECENT``
    (all but the last one when that is all there is). Empty: nothing to compact."""
    fresh = [t for t in turns if summary is None or t.number > summary.last]
    keep = KEEP_RECENT if len(fresh) > KEEP_RECENT else 1
    return fresh[: max(0, len(fresh) - keep)]


def summary_request(
    limits: NodeLimits,
    query: str,
    context: ContextInfo,
    summary: Summary | None,
    covered: Sequence[NumberedTurn],
) -> tuple[ChatMessage, ...]:
    """The messages asking the node's model to summarise ``summary`` plus the ``covered`` turns."""
    system = (
        f"{SUMMARY_MARKER} The node answers a query by writing Python in a REPL over a large `context`; "
        "its conversation has grown too long for the model's context window, so its older iterations "
        "are to be replaced by your summary. The REPL keeps every variable: the node will read them "
        "again.\n\n"
        "Write a summary that lets the node continue without the original iterations:\n"
        "- what it has learned so far about the context and the query (facts, numbers, partial answers);\n"
        "- which REPL variables hold what (name, type, meaning);\n"
        "- what it tried that failed, and what remains to be done.\n"
        "Plain text, concise, no code blocks to run."
    )
    parts = [first_user_message(query, context)]
    if summary is not None:
        parts.append(summary_message(summary))
    for numbered in covered:
        parts.append(
            f"Iteration {numbered.number}, the node's reply:\n{numbered.turn.reply}\n\n"
            + iteration_message(numbered.number, numbered.turn.cells, limits)
        )
    parts.append(f"{SUMMARISE} 1..{covered[-1].number} as asked.")
    return (ChatMessage("system", system), ChatMessage("user", "\n\n---\n\n".join(parts)))


def is_summary_request(messages: Sequence[ChatMessage]) -> bool:
    return bool(messages) and messages[0].role == "system" and messages[0].content.startswith(SUMMARY_MARKER)
