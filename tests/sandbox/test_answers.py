"""Every way code can declare an answer, on both backends (the runtime is the same)."""

from __future__ import annotations

import pytest

from sandbox import Answer
from tests.sandbox.helpers import OpenSession, no_subcalls


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("x = 1", None),
        ("answer['content'] = 'draft'", Answer("draft", ready=False)),
        ("answer['content'] = 'done'\nanswer['ready'] = True", Answer("done", ready=True)),
        ("answer.update(content=42, ready=True)", Answer("42", ready=True)),
        ("FINAL('the answer')", Answer("the answer", ready=True)),
        ("FINAL([1, 2])", Answer("[1, 2]", ready=True)),
        ("result = 'from a variable'\nFINAL_VAR('result')", Answer("from a variable", ready=True)),
        ("n = 7\nFINAL_VAR(' n ')", Answer("7", ready=True)),
        ("answer = {'content': 'rebound', 'ready': True}", Answer("rebound", ready=True)),
        ("answer = 'not a dict'\nFINAL('recovered')", Answer("recovered", ready=True)),
    ],
)
def test_answer_forms(open_any: OpenSession, code: str, expected: Answer | None) -> None:
    result = open_any().execute(code, no_subcalls)
    assert result.status == "ok", result.traceback
    assert result.answer == expected


def test_final_var_with_an_unknown_name_raises_in_the_cell(open_process: OpenSession) -> None:
    result = open_process().execute("FINAL_VAR('missing')", no_subcalls)
    assert result.status == "error"
    assert result.traceback is not None
    assert "NameError: FINAL_VAR: there is no variable named 'missing'" in result.traceback
    assert result.answer is None


def test_final_var_given_a_value_says_to_use_final(open_process: OpenSession) -> None:
    result = open_process().execute("FINAL_VAR(3)", no_subcalls)
    assert result.status == "error"
    assert result.traceback is not None and "use FINAL(value)" in result.traceback


def test_answer_survives_into_the_snapshot_and_restore(open_process: OpenSession) -> None:
    first = open_process()
    done = first.execute("answer['content'] = 'partial'", no_subcalls)
    assert done.snapshot is not None
    second = open_process()
    second.restore(done.snapshot)
    assert second.execute("pass", no_subcalls).answer == Answer("partial", ready=False)


def test_show_vars_lists_user_variables_only(open_process: OpenSession) -> None:
    result = open_process().execute("import json\nrows = [1]\nname = 'x'\nprint(SHOW_VARS())", no_subcalls)
    assert result.stdout.strip() == "{'name': 'str', 'rows': 'list'}"
    assert result.variables == {"name": "str", "rows": "list"}
