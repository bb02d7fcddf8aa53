"""The messages an RLM node exchanges with its model.

Layout of one node's conversation (``conversation()`` builds it from what the store holds):

1. system: the REPL, ``context``, the helpers, the answer forms and this node's limits;
2. user: the query plus the context's type, total length and chunk lengths (never its text); for a
   corpus, the number of documents, their lengths and (the first of) their names;
3. then per iteration: the assistant's reply, and a user message with each cell's code and
   truncated output (or a reminder to write code when the reply had none);
4. after the last allowed iteration, once: the forced-final request, answered in plain text.

A child started by ``rlm_query(prompt)`` gets the whole prompt as its ``context`` and the prompt's
first line as its query (``child_query``); the system prompt tells the model to write prompts that
way. The ``read_*`` functions recover the machine-readable parts of rendered messages; the scripted
model relies on them, and tests pin that rendering and reading agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]

CHILD_QUERY_CHARS = 2_000
SHOWN_CHUNK_LENGTHS = 20
SHOWN_NAMES = 20
# The kind of a corpus context (orchestrator/corpus.py): a list of documents with their names.
DOCUMENTS = "documents"
BLOCK_FAILED = "The block failed:"
FORCED_FINAL_HEADER = "You have used every iteration this node is allowed."
# A batched sub-call's item whose sub-call ended without an answer starts with this (the workflow's
# ``failed_item`` writes it; the system prompt tells the model to test for it).
FAILED_ITEM_PREFIX = "Error: sub-call "
_QUERY_HEADER = "The query (everything after this line):"
_LIMITS = re.compile(
    r"^Limits: depth=(?P<depth>\d+) max_depth=(?P<max_depth>\d+) max_iterations=(?P<max_iterations>\d+) "
    r"max_subcalls=(?P<max_subcalls>\d+) max_concurrency=(?P<max_concurrency>\d+) "
    r"output_chars=(?P<output_chars>\d+)$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True)
class NodeLimits:
    depth: int = 0
    max_depth: int = 1
    max_iterations: int = 30
    max_subcalls: int = 500
    max_concurrency: int = 64
    # How many characters of each cell's output the model is shown (head and tail kept).
    output_chars: int = 5_000

    @property
    def rlm_children_recurse(self) -> bool:
        """Whether ``rlm_query`` here starts a child RLM (else a plain completion: depth is used up)."""
        return self.depth + 1 <= self.max_depth


@dataclass(frozen=True)
class ContextInfo:
    kind: str  # str, list, dict (a .json file's value) or DOCUMENTS
    total_chars: int
    chunk_lengths: tuple[int, ...]
    names: tuple[str, ...] = ()  # DOCUMENTS: each document's name, in order

    @staticmethod
    def of_text(length: int) -> ContextInfo:
        return ContextInfo(kind="str", total_chars=length, chunk_lengths=(length,))


@dataclass(frozen=True)
class CellReport:
    code: str
    stdout: str
    stderr: str = ""
    # Traceback, or the sandbox's message for a timeout / out-of-memory / crash.
    error: str | None = None
    # Characters the sandbox already cut from stdout + stderr before handing them over.
    chars_cut: int = 0


@dataclass(frozen=True)
class Turn:
    reply: str
    cells: tuple[CellReport, ...] = field(default_factory=tuple)


def truncate(text: str, limit: int) -> str:
    """Keep the head and tail of ``text`` within ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    head = limit // 2
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut:,} characters cut ...]\n{text[len(text) - tail :] if tail else ''}"


def limits_line(limits: NodeLimits) -> str:
    return (
        f"Limits: depth={limits.depth} max_depth={limits.max_depth} max_iterations={limits.max_iterations} "
        f"max_subcalls={limits.max_subcalls} max_concurrency={limits.max_concurrency} "
        f"output_chars={limits.output_chars}"
    )


def read_limits(system_text: str) -> NodeLimits | None:
    """The limits rendered into an RLM system prompt, or None for any other text."""
    found = _LIMITS.search(system_text)
    if found is None:
        return None
    return NodeLimits(**{name: int(value) for name, value in found.groupdict().items()})


def system_prompt(limits: NodeLimits) -> str:
    if limits.rlm_children_recurse:
        rlm_note = (
            "rlm_query starts a child RLM one level deeper, with its own REPL: its `context` is the whole "
            "prompt you pass and its query is the prompt's first line. So write such prompts as one line "
            "of instruction, a newline, then the data."
        )
    else:
        rlm_note = (
            "This node is at the maximum depth, so rlm_query and rlm_query_batched run a plain completion "
            "(like llm_query) instead of a child RLM."
        )
    return f"""You answer a query about a context that is far too large to read in one prompt. You work in a \
Python REPL, writing code that inspects the context, asks sub-models about pieces of it, and combines \
their answers.

The REPL:
- A variable `context` holds the full context: a str for a text file, a list of documents for a \
directory, or the parsed value of a JSON file. You see its type and size below, never its text: \
look at it with code (slicing, len, re, printing small parts).
- Write code in fenced blocks tagged repl:
```repl
print(len(context), context[:500])
```
  Every block in a reply runs, in order, in the same namespace; variables persist between blocks \
and iterations. After each reply you are shown each block's code and its output, truncated to \
{limits.output_chars:,} characters per block (so print summaries, not whole chunks).
- The standard library is available; there is no network.

Helpers:
- llm_query(prompt, model=None) -> str: one completion by a sub-model. A sub-model reads about \
100,000 characters well; give it a chunk plus a precise question.
- llm_query_batched(prompts, model=None) -> list[str]: many completions at once, answers in the \
same order. Runs up to {limits.max_concurrency} at a time; far faster than a loop of llm_query.
- rlm_query(prompt, model=None) -> str and rlm_query_batched(prompts, model=None) -> list[str]: \
the same for recursive RLM sub-calls. {rlm_note}
- SHOW_VARS() lists your variables and their types.
- Failures: llm_query_batched and rlm_query_batched always return one string per prompt. An item whose \
sub-call failed or ran out of time is "{FAILED_ITEM_PREFIX}<id> ended <status>: <reason>" instead of an \
answer, and every other answer is kept: test with item.startswith("{FAILED_ITEM_PREFIX}") and ask again \
only for those items. A single llm_query or rlm_query that fails raises SubcallError saying why, and \
so does any call refused by the limits or the budget.

Answering: set the answer from code in one of three ways, and the node ends after that block:
- answer["content"] = "..." then answer["ready"] = True
- FINAL(value)
- FINAL_VAR("variable_name")
Answer the query exactly as asked (a number, a name, a short text), without commentary.

Limits for this node:
- at most {limits.max_iterations} iterations (replies with code); after the last one you are asked \
once for a final answer in plain text;
- at most {limits.max_subcalls} sub-calls in total (each prompt in a batch counts once); beyond that \
a sub-call raises, so batch and use bigger chunks;
- recursion depth {limits.depth} of at most {limits.max_depth}.
{limits_line(limits)}"""


def _chunk_lengths(lengths: Sequence[int]) -> str:
    shown = ", ".join(f"{n:,}" for n in lengths[:SHOWN_CHUNK_LENGTHS])
    if len(lengths) <= SHOWN_CHUNK_LENGTHS:
        return f"[{shown}]"
    rest = lengths[SHOWN_CHUNK_LENGTHS:]
    return f"[{shown}, ... {len(rest):,} more, from {min(rest):,} to {max(rest):,}]"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return f"{shown}, ... and {more:,} more" if more > 0 else shown


def _shape(context: ContextInfo) -> str:
    count = len(context.chunk_lengths)
    if context.kind == DOCUMENTS:
        noun = "document" if count == 1 else "documents"
        return (
            f"`context` is a list of {count:,} {noun}, {context.total_chars:,} characters in total, "
            f"of these lengths: {_chunk_lengths(context.chunk_lengths)}. `context.names` holds their "
            f"names in the same order: {_names(context.names)}."
        )
    noun = "chunk" if count == 1 else "chunks"
    return (
        f"`context` is a {context.kind} of {context.total_chars:,} characters in total, "
        f"in {count:,} {noun} of these lengths: {_chunk_lengths(context.chunk_lengths)}."
    )


def first_user_message(query: str, context: ContextInfo) -> str:
    return (
        f"{_shape(context)}\n"
        "You have not looked at it yet. Start by writing repl code; answer only once your code has "
        "established the answer.\n\n"
        f"{_QUERY_HEADER}\n{query}"
    )


def read_query(first_user_text: str) -> str | None:
    """The query rendered by ``first_user_message``, or None for any other text."""
    _, found, query = first_user_text.partition(f"{_QUERY_HEADER}\n")
    return query if found else None


def _cell(position: int, cell: CellReport, output_chars: int) -> str:
    output = cell.stdout + (f"\n[stderr]\n{cell.stderr}" if cell.stderr else "")
    shown = truncate(output, output_chars) if output.strip() else "(no output)"
    cut_note = f"\n[{cell.chars_cut:,} characters were already cut by the sandbox]" if cell.chars_cut else ""
    error = f"\n{BLOCK_FAILED}\n{truncate(cell.error, output_chars)}" if cell.error else ""
    return f"Block {position}:\n```repl\n{cell.code}\n```\nOutput:\n{shown}{cut_note}{error}"


def iteration_message(iteration: int, cells: Sequence[CellReport], limits: NodeLimits) -> str:
    """The user message after iteration ``iteration`` (1-based): what each of its blocks did."""
    left = limits.max_iterations - iteration
    remaining = f"{left} iteration{'s' if left != 1 else ''} left."
    if not cells:
        return (
            f"Iteration {iteration}: your reply had no ```repl block, so nothing ran and no answer is set. "
            f"Write repl code that works toward the answer, or sets it. {remaining}"
        )
    body = "\n\n".join(_cell(i + 1, cell, limits.output_chars) for i, cell in enumerate(cells))
    return f"Iteration {iteration} ran {len(cells)} block(s); no answer is set yet. {remaining}\n\n{body}"


def forced_final_message() -> str:
    return (
        f"{FORCED_FINAL_HEADER} No more code will run. Reply with your best final answer to the query "
        "as plain text (no code block): the answer itself, as exactly as the query asks for it."
    )


def is_forced_final(text: str) -> bool:
    return text.startswith(FORCED_FINAL_HEADER)


def conversation(
    limits: NodeLimits,
    query: str,
    context: ContextInfo,
    turns: Sequence[Turn],
    *,
    forced_final: bool = False,
) -> tuple[ChatMessage, ...]:
    """The messages for the next generation of a node that has completed ``turns``."""
    messages = [
        ChatMessage("system", system_prompt(limits)),
        ChatMessage("user", first_user_message(query, context)),
    ]
    for number, turn in enumerate(turns, start=1):
        messages.append(ChatMessage("assistant", turn.reply))
        messages.append(ChatMessage("user", iteration_message(number, turn.cells, limits)))
    if forced_final:
        messages.append(ChatMessage("user", forced_final_message()))
    return tuple(messages)


def leaf_messages(prompt: str) -> tuple[ChatMessage, ...]:
    """A leaf (``llm_query``) is one plain completion of the prompt as written by the parent's code."""
    return (ChatMessage("user", prompt),)


def child_query(prompt: str) -> str:
    """The query of the child RLM that ``rlm_query(prompt)`` starts: the prompt's first non-empty line."""
    first = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    return truncate(first, CHILD_QUERY_CHARS)
