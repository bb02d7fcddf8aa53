"""The scripted model's reply to a compaction's summary request (``orchestrator.protocol.compaction``).

Pure, like the policies: the summary names the REPL variables the summarised code assigned and did not
delete, plus those the previous summary named, so a later compaction keeps what an earlier one said.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrator.protocol.compaction import SUMMARISE
from orchestrator.protocol.prompts import ChatMessage

_ASSIGNED = re.compile(r"^(?P<name>[A-Za-z_]\w*)\s*=[^=]", re.M)
_REPL_BLOCK = re.compile(r"```repl\n(?P<code>.*?)```", re.S)
_DELETED = re.compile(r"^del (?P<names>[\w, ]+)$", re.M)
_VARIABLES = re.compile(r"^REPL variables set: (?P<names>.*)$", re.M)
_COVERS = re.compile(rf"{SUMMARISE} 1\.\.(?P<last>\d+)")


def summary_reply(messages: Sequence[ChatMessage]) -> str:
    """A summary request's reply: which variables the summarised code set (a real model says more)."""
    text = messages[-1].content if messages else ""
    names: dict[str, None] = {}
    for found in _VARIABLES.finditer(text):
        names.update(dict.fromkeys(n for n in found.group("names").split(", ") if n != "none"))
    deleted: set[str] = set()
    for block in _REPL_BLOCK.finditer(text):
        code = block.group("code")
        names.update(dict.fromkeys(m.group("name") for m in _ASSIGNED.finditer(code)))
        deleted.update(n.strip() for m in _DELETED.finditer(code) for n in m.group("names").split(","))
    public = [n for n in names if not n.startswith("_") and n not in deleted]
    covers = _COVERS.search(text)
    last = covers.group("last") if covers else "?"
    return (
        f"Iterations 1..{last} inspected the context with code.\n"
        f"REPL variables set: {', '.join(public) or 'none'}\n"
        "Remaining: continue toward the answer to the query."
    )
