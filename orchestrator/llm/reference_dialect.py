"""The scripted policies speaking to the reference RLM implementation (PyPI ``rlms``, ``rlm.RLM``).

Its conversations differ from durable-rlm's (``orchestrator.protocol.prompts``): the system prompt
starts "You are a Recursive Language Model (RLM)", the query comes as "Answer the following: <query>"
in the first user message, each turn adds a "Turn i/n:" user message, cell outputs come back as
"REPL output:" messages with a failure's last line ``<ExceptionName>: <message>``, and the request for
a final answer after the last iteration is an *assistant* message. Its REPL knows no ``FINAL`` /
``FINAL_VAR``: a cell answers by setting ``answer["content"]`` and ``answer["ready"] = True``.

``reference_reply`` reads such a conversation into the policies' ``View`` and writes the same code
the policies write for durable-rlm, with a two-function prelude that gives ``FINAL``/``FINAL_VAR``
their meaning through ``answer``; so both engines run the same programs over the same context.
Pure functions, like ``orchestrator.llm.policies``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from orchestrator.llm.policies import PolicyParams, View, rlm_reply
from orchestrator.protocol.prompts import ChatMessage, NodeLimits

SYSTEM_MARK = "You are a Recursive Language Model (RLM)"
_QUERY = re.compile(r"^Answer the following: (?P<query>.*?)\n\nYour context is a ", re.S)
_OUTPUT_HEADER = re.compile(r"^REPL output( \(block \d+\))?:")
# The reference appends "\n<type(e).__name__>: <e>" to a failed cell's stderr.
_FAILED = re.compile(r"(?m)^[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt): ")
_BLOCK = "```repl\n"
# FINAL/FINAL_VAR through the reference's ``answer`` dict; exec gives these functions the cell's
# namespace as their globals, so FINAL_VAR finds the cell's variables.
_ANSWER_SHIM = """def FINAL(value):
    answer["content"] = str(value)
    answer["ready"] = True

def FINAL_VAR(name):
    FINAL(globals()[name])

"""


def is_reference(messages: Sequence[ChatMessage]) -> bool:
    return bool(messages) and messages[0].role == "system" and messages[0].content.startswith(SYSTEM_MARK)


def reference_view(messages: Sequence[ChatMessage]) -> View:
    users = [m.content for m in messages if m.role == "user"]
    found = _QUERY.search(users[0]) if users else None
    outputs = tuple(text for text in users if _OUTPUT_HEADER.match(text))
    return View(
        limits=NodeLimits(),
        query=found.group("query") if found else "",
        iteration=sum(1 for m in messages if m.role == "assistant"),
        failures=sum(1 for text in outputs if _FAILED.search(text)),
        outputs=outputs,
        last_user=users[-1] if users else "",
        forced_final=messages[-1].role == "assistant",
    )


def reference_reply(params: PolicyParams, messages: Sequence[ChatMessage]) -> str:
    """The reply of policy ``params.policy`` to a conversation of the reference implementation."""
    return rlm_reply(params, reference_view(messages)).replace(_BLOCK, _BLOCK + _ANSWER_SHIM)
