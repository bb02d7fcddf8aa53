"""Reading model replies: the code blocks to run, in order, and plain-text final answers.

A block is fenced with three or more backticks and tagged ``repl`` (``python`` and ``py`` are accepted
because models write them out of habit). Blocks with other tags are prose, not code to run. A block
that is never closed is dropped: it is usually a reply cut off by ``max_tokens``, and running half a
program does more harm than running none.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

RUNNABLE_TAGS = frozenset({"repl", "python", "py"})

_OPEN = re.compile(r"^[ ]{0,3}(?P<fence>`{3,})[ \t]*(?P<tag>[A-Za-z0-9_+-]*)[^`\n]*$")
_FINAL = re.compile(r"^[ \t]*FINAL\((?P<body>.*)\)[ \t]*$", re.MULTILINE | re.DOTALL)
_FINAL_VAR = re.compile(
    r"^[ \t]*FINAL_VAR\([ \t]*['\"]?(?P<name>[A-Za-z_][A-Za-z0-9_]*)['\"]?[ \t]*\)[ \t]*$", re.MULTILINE
)
_FINAL_ANSWER = re.compile(
    r"^[ \t]*(?:\*\*)?FINAL ANSWER(?:\*\*)?[ \t]*:[ \t]*(?P<body>.*)\Z", re.MULTILINE | re.DOTALL
)


@dataclass(frozen=True)
class CodeBlock:
    index: int
    tag: str
    code: str


@dataclass(frozen=True)
class ParsedReply:
    blocks: tuple[CodeBlock, ...]
    # Text outside all fences: where a plain-text FINAL(...) may appear.
    prose: str
    final_text: str | None
    final_var: str | None


def _split(text: str) -> tuple[list[CodeBlock], str]:
    blocks: list[CodeBlock] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _OPEN.match(lines[i])
        if opening is None:
            prose.append(lines[i])
            i += 1
            continue
        fence, tag = opening.group("fence"), opening.group("tag").lower()
        close = re.compile(rf"^[ ]{{0,3}}`{{{len(fence)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), None)
        if end is None:
            break
        if tag in RUNNABLE_TAGS:
            code = "\n".join(lines[i + 1 : end])
            if code.strip():
                blocks.append(CodeBlock(index=len(blocks), tag=tag, code=code))
        i = end + 1
    return blocks, "\n".join(prose)


def _literal_or_raw(body: str) -> str:
    body = body.strip()
    try:
        value = ast.literal_eval(body)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return body
    return value if isinstance(value, str) else str(value)


def parse_reply(text: str) -> ParsedReply:
    blocks, prose = _split(text)
    final = _FINAL.search(prose)
    final_var = _FINAL_VAR.search(prose)
    return ParsedReply(
        blocks=tuple(blocks),
        prose=prose,
        final_text=_literal_or_raw(final.group("body")) if final else None,
        final_var=final_var.group("name") if final_var else None,
    )


def forced_final_answer(text: str) -> str | None:
    """The answer in a reply to the forced-final request, or None when the reply holds none.

    That turn asks for plain text, so everything outside code fences counts; ``FINAL(...)`` and a
    ``FINAL ANSWER:`` line are honoured first because models use them even when told not to.
    """
    parsed = parse_reply(text)
    if parsed.final_text is not None:
        return parsed.final_text
    labelled = _FINAL_ANSWER.search(parsed.prose)
    answer = labelled.group("body") if labelled else parsed.prose
    answer = answer.strip()
    return answer or None
