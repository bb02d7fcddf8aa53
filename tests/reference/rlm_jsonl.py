"""Check ``rlm export --format rlm-jsonl`` lines against the reference implementation's field list
(``rlm_types_fields.json``, copied from rlms 0.1.3): every field present with an allowed JSON type, no
field the reference does not have."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIELDS = json.loads((Path(__file__).parent / "rlm_types_fields.json").read_text())["records"]

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _record(name: str, value: Any, where: str) -> list[str]:
    spec = FIELDS[name]
    if not isinstance(value, dict):
        return [f"{where}: a {name} must be an object, got {type(value).__name__}"]
    problems = []
    for field, types in spec["fields"].items():
        if field not in value:
            if field not in spec["optional"]:
                problems.append(f"{where}: missing field {field!r} of {name}")
            continue
        item = value[field]
        allowed = tuple(t for kind in types for t in _TYPES[kind])
        if not isinstance(item, allowed) or (isinstance(item, bool) and bool not in allowed):
            problems.append(f"{where}.{field}: {type(item).__name__} is not one of {types}")
    problems += [
        f"{where}: field {f!r} is not in the reference {name}" for f in value if f not in spec["fields"]
    ]
    return problems


def line_problems(line: dict[str, Any], number: int) -> list[str]:
    """What is wrong with one exported line (empty: it matches the reference)."""
    where = f"line {number}"
    kind = line.get("type")
    if kind == "metadata":
        return _record("metadata_line", line, where)
    if kind != "iteration":
        return [f"{where}: type {kind!r} is neither 'metadata' nor 'iteration'"]
    problems = _record("iteration_line", line, where)
    for b, block in enumerate(line.get("code_blocks") or []):
        at = f"{where}.code_blocks[{b}]"
        problems += _record("code_block", block, at)
        result = block.get("result") if isinstance(block, dict) else None
        problems += _record("repl_result", result, f"{at}.result")
        for c, call in enumerate((result or {}).get("rlm_calls") or []):
            call_at = f"{at}.result.rlm_calls[{c}]"
            problems += _record("rlm_chat_completion", call, call_at)
            usage = call.get("usage_summary") if isinstance(call, dict) else None
            problems += _record("usage_summary", usage, f"{call_at}.usage_summary")
            for model, summary in ((usage or {}).get("model_usage_summaries") or {}).items():
                problems += _record("model_usage_summary", summary, f"{call_at}.usage_summary[{model!r}]")
    return problems


def file_problems(text: str) -> list[str]:
    """Problems of a whole export: a metadata line first, then iteration lines numbered 1, 2, ..."""
    lines = [json.loads(raw) for raw in text.splitlines()]
    problems = [] if lines and lines[0].get("type") == "metadata" else ["the first line is not the metadata"]
    for number, line in enumerate(lines, start=1):
        problems += line_problems(line, number)
    numbers = [line.get("iteration") for line in lines[1:]]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"iteration numbers {numbers} do not count 1, 2, ...")
    return problems
