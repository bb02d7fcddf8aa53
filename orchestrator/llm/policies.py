"""What the scripted model says: policies that read the conversation and write real REPL code.

Pure functions of the messages (no I/O, no clock), so a policy's reply to a given conversation never
changes. Two roles:

- RLM role (the conversation starts with an RLM system prompt): the policy writes ```repl code that
  runs in the sandbox against the real ``context``; answers come out of that code.
- leaf role (anything else, e.g. a prompt sent by ``llm_query``): the model answers the prompt
  itself by computing over the text in it: the first line is the instruction, the rest the data.

Tasks the policies understand (from the query, or from a sub-prompt's first line):

- find: ``/regex/`` (group 1 if it has one), a quoted 'phrase', or "What is the <subject>?", which
  looks for the value written after the subject ("The magic number is 4817305." -> 4817305);
- count: "how many"/"count"/"number of" with ``/regex/`` or a quoted 'word' (matched as a whole word).

Policy ``code`` runs the query itself as its first cell (tests give it exact or hostile programs).
Policy ``long`` finds the value the query asks for into a REPL variable, then prints a piece of the
context per iteration for ``steps`` iterations (a conversation that outgrows a small context window),
then answers from that variable: the REPL state must survive compaction.

A summary request (``orchestrator.protocol.compaction``) gets a summary in every policy: the REPL
variables the summarised code assigned, and what the previous summary said.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.llm.summaries import summary_reply
from orchestrator.llm.tasks import (
    Target,
    count_instruction,
    count_target,
    find_target,
    is_counting,
)
from orchestrator.protocol.compaction import is_summary_request, read_compacted
from orchestrator.protocol.prompts import (
    BLOCK_FAILED,
    FAILED_ITEM_PREFIX,
    ChatMessage,
    NodeLimits,
    is_forced_final,
    read_limits,
    read_query,
)
from orchestrator.protocol.session_prompt import question_of

RLM_POLICIES = ("search", "mapreduce", "recurse", "leaf", "loop", "spin", "partial", "code", "long")
DEFAULT_CHUNKS = 10
# How many failed attempts a policy makes before it gives up and answers with the reason.
MAX_ATTEMPTS = 3

_CHUNKS = re.compile(r"\b(?P<n>\d[\d,_]*)\s+chunks?\b", re.I)


@dataclass(frozen=True)
class PolicyParams:
    policy: str
    chunks: int | None = None
    # recurse: fan out with rlm_query_batched (True) or one rlm_query per half (False).
    parallel: bool = True
    # recurse: below this many characters a node counts directly instead of splitting further.
    min_split_chars: int = 1_000
    # long: iterations before it answers.
    steps: int = 8


@dataclass(frozen=True)
class View:
    """The parts of a conversation the policies decide on."""

    limits: NodeLimits | None
    query: str
    iteration: int
    failures: int
    # The user messages after the first: each iteration's report (and the forced-final request).
    outputs: tuple[str, ...]
    last_user: str
    forced_final: bool


def view_of(messages: Sequence[ChatMessage]) -> View:
    limits = read_limits(messages[0].content) if messages and messages[0].role == "system" else None
    users = [m.content for m in messages if m.role == "user"]
    # A session turn's paragraph about its REPL (`history`, `notes`) is not part of what it asks: the
    # scripted model reads the question alone, as a language model would.
    query = question_of((read_query(users[0]) if users else None) or "")
    last_user = users[-1] if users else ""
    # A compacted conversation counts the summarised iterations too.
    compacted = max((n for n in map(read_compacted, users[1:]) if n is not None), default=0)
    return View(
        limits=limits,
        query=query if limits is not None else last_user,
        iteration=compacted + sum(1 for m in messages if m.role == "assistant"),
        failures=sum(1 for text in users[1:] if BLOCK_FAILED in text),
        outputs=tuple(users[1:]),
        last_user=last_user,
        forced_final=is_forced_final(last_user),
    )


# ---------------------------------------------------------------- leaf role


def leaf_answer(prompt: str) -> str:
    """Answer a plain prompt: first line the instruction, the rest the text it is about."""
    instruction, _, data = prompt.partition("\n")
    if is_counting(instruction):
        target = count_target(instruction)
        if target is None:
            return "I can count /regex/ matches or 'quoted' words; the instruction named neither."
        return str(len(re.findall(target.pattern, data)))
    target = find_target(instruction)
    if target is None:
        return "I can find /regex/ matches or answer 'What is the <subject>?'; the instruction was neither."
    found = re.search(target.pattern, data)
    return found.group(target.group) if found else "NOT FOUND"


# ---------------------------------------------------------------- RLM role: code the policies write

_PRELUDE = """import re

def _as_text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\\n".join(str(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "\\n".join(str(v) for v in value)
    return str(value)

def _split(text, n):
    # n pieces cut at line ends (else whitespace), so no line is split between two pieces
    bounds = [0]
    for k in range(1, n):
        pos = max(bounds[-1], k * len(text) // n)
        cut = text.find("\\n", pos)
        if cut == -1:
            space = re.compile(r"\\s").search(text, pos)
            cut = space.start() if space else len(text)
        bounds.append(cut)
    bounds.append(len(text))
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

text = _as_text(context)
# a child RLM's context starts with the instruction line its parent wrote: keep only the data
_first, _sep, _rest = text.partition("\\n")
if _sep and _first.strip() == {query!r}.strip():
    text = _rest
del _first, _sep, _rest
"""

# Large temporaries are deleted at the end of each cell: every cell's variables are snapshotted.
_CLEANUP = "del text, _as_text, _split"


def _repl(code: str, intro: str) -> str:
    return f"{intro}\n\n```repl\n{code}\n```"


def _prelude(query: str) -> str:
    return _PRELUDE.format(query=query)


def _give_up(reason: str) -> str:
    return _repl(f"FINAL({reason!r})", "I cannot get further; answering with what went wrong.")


def _search(view: View) -> str:
    target = find_target(view.query)
    if target is None:
        return _give_up(
            f"The query names nothing to look for (use /regex/, 'a phrase' or 'What is the X?'): {view.query}"
        )
    if view.failures:
        return _give_up(f"The search for {target.label} failed; see the error above.")
    if view.iteration > 0:
        return _give_up(f"No match for {target.label} in the context.")
    code = f"""{_prelude(view.query)}
pattern = {target.pattern!r}
_m = re.search(pattern, text)
if _m:
    print(f"match at {{_m.start():,}}: {{text[max(0, _m.start() - 60):_m.end() + 60]!r}}")
    FINAL(_m.group({target.group}))
else:
    print(f"no match for {{pattern!r}} in {{len(text):,}} characters")
del _m
{_CLEANUP}"""
    return _repl(code, f"I will search the context for {target.label} with a regular expression.")


def _chunk_count(view: View, params: PolicyParams, limits: NodeLimits) -> int:
    if params.chunks is not None:
        wanted = params.chunks
    else:
        found = _CHUNKS.search(view.query)
        wanted = int(found.group("n").replace(",", "").replace("_", "")) if found else DEFAULT_CHUNKS
        wanted = min(wanted, limits.max_subcalls)
    # After a failed map (e.g. the sub-call limit), retry with bigger chunks.
    return max(1, wanted >> view.failures)


_MAP_BATCHED = "replies = llm_query_batched(_prompts)"
# A batched call keeps the answers it got and marks failed items; a count needs every chunk, so the
# block fails and the next iteration tries again (with bigger chunks).
_CHECK_REPLIES = f"""_failed = [r for r in replies if r.startswith({FAILED_ITEM_PREFIX!r})]
if _failed:
    raise RuntimeError(f"{{len(_failed)}} of {{len(replies)}} sub-calls failed: {{_failed[0]}}")
del _failed"""
# One llm_query per chunk, each timed from inside the sandbox (the sub-call round trip a benchmark reads).
_MAP_ONE_BY_ONE = """import time
replies, _ms = [], []
for _prompt in _prompts:
    _t = time.perf_counter()
    replies.append(llm_query(_prompt))
    _ms.append((time.perf_counter() - _t) * 1000)
_ms.sort()
_p50, _p95 = _ms[len(_ms) // 2], _ms[int(len(_ms) * 0.95)]
print(f"sub-call round trip ms: p50 {_p50:.2f} p95 {_p95:.2f} n {len(_ms)}")
del _t, _prompt, _ms, _p50, _p95"""


def _mapreduce(view: View, params: PolicyParams, limits: NodeLimits) -> str:
    target = count_target(view.query)
    if target is None:
        return _give_up(f"The query names nothing to count (use /regex/ or a 'quoted' word): {view.query}")
    n = _chunk_count(view, params, limits)
    code = f"""{_prelude(view.query)}
chunks = _split(text, {n})
_prompts = [{count_instruction(target)!r} + "\\n" + chunk for chunk in chunks]
{_MAP_BATCHED if params.parallel else _MAP_ONE_BY_ONE}
{_CHECK_REPLIES}
counts = [int(re.search(r"-?\\d+", reply).group()) for reply in replies]
total = sum(counts)
_more = " ..." if len(counts) > 10 else ""
print(f"{{len(chunks)}} chunks; counts {{counts[:10]}}{{_more}}; total {{total}}")
answer["content"] = str(total)
answer["ready"] = True
del chunks, _prompts, _more
{_CLEANUP}"""
    intro = (
        f"I will split the context into {n} chunks, count {target.label} in each with a sub-model, and sum."
    )
    return _repl(code, intro)


def _direct_count(view: View, target: Target) -> str:
    code = f"""{_prelude(view.query)}
pattern = {target.pattern!r}
total = str(sum(1 for _ in re.finditer(pattern, text)))
print(f"{{total}} matches of {{pattern!r}} in {{len(text):,}} characters")
FINAL_VAR("total")
{_CLEANUP}"""
    return _repl(code, f"The text is small enough: I will count {target.label} directly.")


def _recurse(view: View, params: PolicyParams, limits: NodeLimits) -> str:
    target = count_target(view.query)
    if target is None:
        return _give_up(f"The query names nothing to count (use /regex/ or a 'quoted' word): {view.query}")
    if not limits.rlm_children_recurse:
        return _direct_count(view, target)
    call = (
        "replies = rlm_query_batched(_prompts)"
        if params.parallel
        else "replies = [rlm_query(prompt) for prompt in _prompts]"
    )
    code = f"""{_prelude(view.query)}
pattern = {target.pattern!r}
if len(text) < {params.min_split_chars}:
    replies = [str(sum(1 for _ in re.finditer(pattern, text)))]
else:
    _prompts = [{count_instruction(target)!r} + "\\n" + part for part in _split(text, {params.chunks or 2})]
    {call}
    del _prompts
{_CHECK_REPLIES}
total = str(sum(int(re.search(r"-?\\d+", reply).group()) for reply in replies))
print(f"parts {{replies}} -> total {{total}}")
FINAL_VAR("total")
{_CLEANUP}"""
    return _repl(
        code,
        f"I will split the context in halves and give each half to a recursive call counting {target.label}.",
    )


def _leaf_rlm(view: View) -> str:
    if is_counting(view.query):
        target = count_target(view.query)
        if target is None:
            return _give_up(
                f"The query names nothing to count (use /regex/ or a 'quoted' word): {view.query}"
            )
        return _direct_count(view, target)
    return _search(view)


def _loop(view: View) -> str:
    code = f'print("iteration {view.iteration + 1}: context length", len(context))'
    return _repl(code, "Looking at the context again.")


def _partial(view: View) -> str:
    # Keeps a provisional answer (not ready) and never finishes: what a node past its deadline keeps.
    code = f'answer["content"] = "partial after iteration {view.iteration + 1}"\nprint(len(context))'
    return _repl(code, "Recording what I have so far, then looking again.")


def _spin(view: View) -> str:
    if view.failures:
        return _give_up("My code never finished, so the cell was stopped.")
    return _repl("while True:\n    pass", "Thinking in a loop.")


def _code(view: View) -> str:
    if view.failures:
        return _give_up("The code given in the query failed; see the error above.")
    if view.iteration > 0:
        return _give_up("The code given in the query ran without setting an answer.")
    return _repl(view.query, "Running the code the query gives.")


# How much of the context each ``long`` iteration prints.
_LONG_PIECE = 1_500


def _long(view: View, params: PolicyParams) -> str:
    target = find_target(view.query)
    if target is None:
        return _give_up(
            f"The query names nothing to look for (use /regex/, 'a phrase' or 'What is the X?'): {view.query}"
        )
    if view.failures:
        return _give_up(f"The search for {target.label} failed; see the error above.")
    if view.iteration == 0:
        code = f"""{_prelude(view.query)}
_m = re.search({target.pattern!r}, text)
found = _m.group({target.group}) if _m else "NOT FOUND"
print(f"noted a value of {{len(found)}} characters; reading on")
del _m
{_CLEANUP}"""
        return _repl(code, f"I will note {target.label} in a variable, then read the context piece by piece.")
    if view.iteration < params.steps - 1:
        start = (view.iteration - 1) * _LONG_PIECE
        code = f"print(str(context)[{start}:{start + _LONG_PIECE}])"
        return _repl(code, f"Reading piece {view.iteration} of the context.")
    return _repl('print(len(found))\nFINAL_VAR("found")', "Answering with the value I noted.")


def _forced_final(view: View) -> str:
    lengths = re.findall(r"context length (\d+)", "\n".join(view.outputs))
    if lengths:
        return f"I ran out of iterations. All I know: the context has {lengths[-1]} characters."
    return "I ran out of iterations without establishing an answer."


def rlm_reply(params: PolicyParams, view: View) -> str:
    """The reply of policy ``params.policy`` in an RLM conversation."""
    limits = view.limits if view.limits is not None else NodeLimits()
    if view.forced_final:
        return _forced_final(view)
    if view.failures >= MAX_ATTEMPTS:
        return _give_up(f"{view.failures} attempts failed; see the errors above.")
    if params.policy == "search":
        return _search(view)
    if params.policy == "mapreduce":
        return _mapreduce(view, params, limits)
    if params.policy == "recurse":
        return _recurse(view, params, limits)
    if params.policy == "loop":
        return _loop(view)
    if params.policy == "spin":
        return _spin(view)
    if params.policy == "partial":
        return _partial(view)
    if params.policy == "code":
        return _code(view)
    if params.policy == "long":
        return _long(view, params)
    return _leaf_rlm(view)


def reply(params: PolicyParams, messages: Sequence[ChatMessage]) -> str:
    if is_summary_request(messages):
        return summary_reply(messages)
    view = view_of(messages)
    if view.limits is None:
        return leaf_answer(view.last_user)
    return rlm_reply(params, view)
