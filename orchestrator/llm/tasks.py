"""The tasks the scripted model understands, read from an instruction (a query or a sub-prompt's
first line): find a ``/regex/`` match, a quoted 'phrase', or the value after "What is the <subject>?";
count ``/regex/`` matches or a quoted 'word' (matched as a whole word). Pure functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REGEX = re.compile(r"/(?P<body>.+)/")
_QUOTED = re.compile(r"'(?P<a>[^'\n]+)'|\"(?P<b>[^\"\n]+)\"|`(?P<c>[^`\n]+)`")
_SUBJECT = re.compile(
    r"^\s*(?:what|which|who)(?:'s|\s+is|\s+are|\s+was)\s+(?:the\s+|a\s+|an\s+)?(?P<s>[^?.!\n]+)", re.I
)
_COUNTING = re.compile(r"\b(?:how many|count|number of)\b", re.I)


@dataclass(frozen=True)
class Target:
    pattern: str
    group: int
    label: str


def _target_regex(text: str) -> Target | None:
    first = text.split("\n", 1)[0]
    found = _REGEX.search(first)
    if found is None:
        return None
    body = found.group("body")
    try:
        groups = re.compile(body).groups
    except re.error:
        return None
    return Target(pattern=body, group=1 if groups else 0, label=f"/{body}/")


def _quoted(text: str) -> str | None:
    found = _QUOTED.search(text)
    if found is None:
        return None
    return next(g for g in found.groups() if g is not None)


def count_target(instruction: str) -> Target | None:
    regex = _target_regex(instruction)
    if regex is not None:
        return Target(pattern=regex.pattern, group=0, label=regex.label)
    term = _quoted(instruction)
    if term is None:
        return None
    escaped = re.escape(term)
    pattern = rf"\b{escaped}\b" if re.fullmatch(r"\w(.*\w)?", term) else escaped
    return Target(pattern=pattern, group=0, label=repr(term))


def find_target(instruction: str) -> Target | None:
    regex = _target_regex(instruction)
    if regex is not None:
        return regex
    subject = _quoted(instruction)
    if subject is None:
        found = _SUBJECT.search(instruction)
        subject = found.group("s").strip() if found else None
    if not subject:
        return None
    words = r"\s+".join(re.escape(w) for w in subject.split())
    # The value written after the subject: "magic number is 4817305", "magic number: 4817305".
    pattern = rf"(?i)\b{words}\b[^\w\n]*(?:(?:is|was|are|equals)\b)?[^\w\n]*(\w[\w-]*(?:\.\d+)?)"
    return Target(pattern=pattern, group=1, label=repr(subject))


def is_counting(instruction: str) -> bool:
    return _COUNTING.search(instruction.split("\n", 1)[0]) is not None


def count_instruction(target: Target) -> str:
    return (
        f"Count the matches of the regex /{target.pattern}/ in the text after this line. "
        "Reply with the number only."
    )
