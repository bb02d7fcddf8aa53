"""The rlm-jsonl lines against the reference's field list (tests/reference/rlm_types_fields.json): the
lines built from a transcript match it, and the check catches a missing, renamed or mistyped field."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from orchestrator.store.models import Node, Step
from orchestrator.transcripts.clips import FULL
from orchestrator.transcripts.rlm_jsonl import _iteration
from tests.reference.rlm_jsonl import file_problems, line_problems
from tests.transcripts.sample import sample

METADATA = {
    "type": "metadata", "timestamp": "2026-11-26T10:00:00+00:00", "root_model": "m", "max_depth": 1,
    "max_iterations": 30, "backend": "litellm", "backend_kwargs": {}, "environment_type": "docker",
    "environment_kwargs": {}, "other_backends": None,
}  # fmt: skip


def _line() -> dict[str, Any]:
    t = sample(FULL)
    it = t.iterations[0]
    assert it.reply is not None
    children = {
        f"r1/0.{n}": Node(
            node_id=f"r1/0.{n}", kind="leaf", iterations=0, prompt_tokens=40, completion_tokens=2
        )
        for n in (1, 2)
    }
    firsts = {node_id: Step(node_id=node_id, model="scripted/leaf") for node_id in children}
    prompt = [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]
    at = datetime(2026, 11, 26, 10, 0, 1, tzinfo=UTC)
    line: dict[str, Any] = json.loads(json.dumps(_iteration(it, it.reply, t, prompt, at, children, firsts)))
    return line


def test_lines_built_from_a_transcript_match_the_reference_fields() -> None:
    line = _line()
    assert line_problems(METADATA, 1) == [] and line_problems(line, 2) == []
    result = line["code_blocks"][0]["result"]
    call = result["rlm_calls"][0]
    assert call["root_model"] == "scripted/leaf" and call["response"] == "7"
    assert call["usage_summary"]["model_usage_summaries"]["scripted/leaf"]["total_calls"] == 1
    assert call["usage_summary"]["total_cost"] == float(Decimal("0.00025"))
    assert result["final_answer"] is None  # the cell's answer was not marked final
    text = "\n".join(json.dumps(x) for x in (METADATA, line))
    assert file_problems(text) == []


def test_the_check_fails_on_a_missing_renamed_or_mistyped_field() -> None:
    missing = _line()
    del missing["iteration_time"]
    assert line_problems(missing, 2) == ["line 2: missing field 'iteration_time' of iteration_line"]

    renamed = _line()
    block = renamed["code_blocks"][0]["result"]
    block["std_out"] = block.pop("stdout")
    assert line_problems(renamed, 2) == [
        "line 2.code_blocks[0].result: missing field 'stdout' of repl_result",
        "line 2.code_blocks[0].result: field 'std_out' is not in the reference repl_result",
    ]

    mistyped = copy.deepcopy(_line())
    mistyped["code_blocks"][0]["result"]["rlm_calls"][0]["execution_time"] = "0.08"
    assert line_problems(mistyped, 2) == [
        "line 2.code_blocks[0].result.rlm_calls[0].execution_time: str is not one of ['number']"
    ]
    assert file_problems(json.dumps(_line())) == ["the first line is not the metadata"]
