"""The sub-call bridge: requests reach the host callback in order, failures raise in the cell, and time
spent waiting on the host does not count against the per-cell timeout."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox import CellResult, SandboxClosed, SandboxLimits, SubcallRefused, SubcallRequest
from tests.sandbox.helpers import OpenSession


def test_hundred_prompts_through_llm_query_batched_come_back_in_order(open_docker: OpenSession) -> None:
    seen: list[SubcallRequest] = []

    def handler(request: SubcallRequest) -> list[str]:
        seen.append(request)
        return [f"answer to {prompt}" for prompt in request.prompts]

    code = (
        "prompts = [f'chunk {i}' for i in range(100)]\n"
        "answers = llm_query_batched(prompts)\n"
        "print(answers[0], '|', answers[99], '|', len(answers))\n"
        "print(answers == [f'answer to chunk {i}' for i in range(100)])"
    )
    result = open_docker().execute(code, handler)
    assert result.status == "ok", result.traceback
    assert result.stdout == "answer to chunk 0 | answer to chunk 99 | 100\nTrue\n"
    prompts = [f"chunk {i}" for i in range(100)]
    assert seen == [SubcallRequest(kind="llm", prompts=prompts, model=None, seq=1, batched=True)]
    assert result.subcalls == 100


def test_kinds_models_and_sequence_numbers(open_process: OpenSession) -> None:
    seen: list[SubcallRequest] = []

    def handler(request: SubcallRequest) -> list[str]:
        seen.append(request)
        return [p[::-1] for p in request.prompts]

    code = (
        "a = llm_query('ab')\nb = rlm_query('cd', model='m/deep')\n"
        "c = rlm_query_batched(['ef', 'gh'])\nd = llm_query_batched([])\nprint(a, b, c, d)"
    )
    session = open_process()
    result = session.execute(code, handler)
    assert result.stdout == "ba dc ['fe', 'hg'] []\n"
    assert seen == [
        SubcallRequest("llm", ["ab"], None, 1),
        SubcallRequest("rlm", ["cd"], "m/deep", 2),
        SubcallRequest("rlm", ["ef", "gh"], None, 3, batched=True),
    ]
    # seq restarts with every cell
    seen.clear()
    session.execute("llm_query('x')", handler)
    assert [r.seq for r in seen] == [1]


def test_a_failed_subcall_raises_in_the_cell_with_the_reason(open_docker: OpenSession) -> None:
    def handler(request: SubcallRequest) -> list[str]:
        raise SubcallRefused("budget exhausted for run r1")

    code = (
        "try:\n    llm_query('q')\nexcept SubcallError as exc:\n    print('caught:', exc)\nllm_query('again')"
    )
    result = open_docker().execute(code, handler)
    assert result.status == "error"
    assert result.stdout == "caught: budget exhausted for run r1\n"
    assert result.traceback is not None
    assert "SubcallError: budget exhausted for run r1" in result.traceback


def test_a_wrong_number_of_answers_raises_in_the_cell(open_process: OpenSession) -> None:
    result = open_process().execute("llm_query_batched(['a', 'b'])", lambda request: ["only one"])
    assert result.status == "error"
    assert result.traceback is not None and "answered with 1 results for 2 prompts" in result.traceback


def test_non_string_prompt_is_a_clear_error(open_process: OpenSession) -> None:
    result = open_process().execute("llm_query_batched(['a', 3])", lambda request: ["x"])
    assert result.status == "error"
    assert result.traceback is not None and "prompt 1 is a int, expected str" in result.traceback


def test_waiting_on_the_host_does_not_count_against_the_cell_timeout(open_docker: OpenSession) -> None:
    def slow(request: SubcallRequest) -> list[str]:
        time.sleep(1.5)
        return ["late"] * len(request.prompts)

    session = open_docker(limits=SandboxLimits(cell_timeout_s=1.0))
    result = session.execute("a = llm_query('1')\nb = llm_query('2')\nprint(a, b)", slow)
    assert result.status == "ok", result.message
    assert result.stdout == "late late\n"
    assert result.duration_s >= 3.0


def test_the_wall_clock_cap_counts_subcall_waits(open_process: OpenSession) -> None:
    def slow(request: SubcallRequest) -> list[str]:
        time.sleep(0.6)
        return ["late"]

    session = open_process(limits=SandboxLimits(cell_timeout_s=10.0, cell_wall_timeout_s=1.0))
    session.execute("kept = 1", slow)
    result = session.execute("kept = 2\nwhile True:\n    llm_query('again')", slow)
    assert result.status == "timeout"
    assert result.message is not None and "wall-clock cap of 1 s" in result.message
    assert session.execute("print(kept)", slow).stdout == "1\n"


def test_an_unexpected_handler_exception_propagates_and_state_is_rolled_back(
    open_process: OpenSession,
) -> None:
    def broken(request: SubcallRequest) -> list[str]:
        raise KeyError("host bug")

    session = open_process()
    session.execute("x = 'before'", broken)
    with pytest.raises(KeyError, match="host bug"):
        session.execute("x = 'during'\nllm_query('q')", broken)
    assert session.execute("print(x)", broken).stdout == "before\n"


def test_subcall_from_a_background_thread_after_the_cell_is_refused(open_process: OpenSession) -> None:
    session = open_process()
    code = (
        "import threading, time\nerrors = []\n"
        "def late():\n    time.sleep(0.3)\n    try:\n        llm_query('x')\n"
        "    except SubcallError as exc:\n        errors.append(str(exc))\n"
        "t = threading.Thread(target=late)\nt.start()"
    )
    session.execute(code, lambda request: ["never"])
    time.sleep(0.6)
    result = session.execute("t.join()\nprint(errors)", lambda request: ["never"])
    assert result.stdout == "['llm_query was called after its cell had finished']\n"


def test_a_cell_driven_step_by_step_waits_on_its_subcall_outside_advance(open_process: OpenSession) -> None:
    # The async activity answers sub-calls between steps; that wait is not the cell's compute time.
    session = open_process(limits=SandboxLimits(cell_timeout_s=1.0))
    cell = session.begin_cell("a = llm_query('first')\nb = llm_query_batched(['x', 'y'])\nprint(a, b)")
    first = cell.advance()
    assert first == SubcallRequest(kind="llm", prompts=["first"], model=None, seq=1)
    time.sleep(1.5)
    second = cell.advance(["one"])
    assert isinstance(second, SubcallRequest) and second.batched and second.prompts == ["x", "y"]
    result = cell.advance(["X", "Y"])
    assert isinstance(result, CellResult) and result.status == "ok", result
    assert result.stdout == "one ['X', 'Y']\n"


def test_a_refusal_and_a_miscounted_answer_raise_in_the_cell(open_process: OpenSession) -> None:
    session = open_process()
    cell = session.begin_cell(
        "try:\n    llm_query('a')\nexcept Exception as e:\n    print(e)\n"
        "try:\n    llm_query_batched(['b', 'c'])\nexcept Exception as e:\n    print(e)"
    )
    cell.advance()
    cell.advance(SubcallRefused("over the limit"))
    result = cell.advance(["only one"])
    assert isinstance(result, CellResult) and result.status == "ok", result
    assert result.stdout == "over the limit\nthe host answered with 1 results for 2 prompts\n"


def test_an_abandoned_cell_rolls_back_and_a_close_stops_a_computing_step(open_process: OpenSession) -> None:
    session = open_process()
    session.execute("x = 'before'", lambda request: [])
    cell = session.begin_cell("x = 'during'\nllm_query('never answered')")
    assert isinstance(cell.advance(), SubcallRequest)
    cell.abandon()
    assert session.execute("print(x)", lambda request: []).stdout == "before\n"

    spinning = session.begin_cell("while True:\n    pass")
    threading.Timer(0.5, session.close).start()
    with pytest.raises(SandboxClosed):
        spinning.advance()


def test_a_value_error_in_the_handler_is_not_mistaken_for_a_protocol_error(open_process: OpenSession) -> None:
    def broken(request: SubcallRequest) -> list[str]:
        raise ValueError("host bug")

    with pytest.raises(ValueError, match="host bug"):
        open_process().execute("llm_query('q')", broken)
