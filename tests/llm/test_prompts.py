"""Prompt building: what each message says, and that the machine-readable parts read back."""

from __future__ import annotations

import ast
import inspect

import orchestrator.protocol.parse as parse_module
import orchestrator.protocol.prompts as prompts_module
from orchestrator.protocol.prompts import (
    CellReport,
    ChatMessage,
    ContextInfo,
    NodeLimits,
    Turn,
    child_query,
    conversation,
    first_user_message,
    forced_final_message,
    is_forced_final,
    iteration_message,
    leaf_messages,
    read_limits,
    read_query,
    system_prompt,
    truncate,
)


def test_system_prompt_explains_repl_helpers_answers_and_limits() -> None:
    limits = NodeLimits(depth=0, max_depth=2, max_iterations=12, max_subcalls=90, max_concurrency=7)
    text = system_prompt(limits)
    for needed in (
        "`context`",
        "```repl",
        "llm_query(prompt",
        "llm_query_batched(prompts",
        "rlm_query(prompt",
        "rlm_query_batched(prompts",
        "SHOW_VARS()",
        'answer["content"]',
        'answer["ready"] = True',
        "FINAL(value)",
        "FINAL_VAR(",
        "at most 12 iterations",
        "at most 90 sub-calls",
        "7 at a time",
        "depth 0 of at most 2",
        "first line",
    ):
        assert needed in text, needed
    assert read_limits(text) == limits


def test_system_prompt_at_max_depth_says_rlm_query_is_a_plain_completion() -> None:
    limits = NodeLimits(depth=1, max_depth=1)
    assert not limits.rlm_children_recurse
    assert "maximum depth" in system_prompt(limits)
    assert read_limits(system_prompt(limits)) == limits
    assert read_limits("You are a helpful assistant.") is None


def test_first_message_gives_type_length_and_chunks_never_the_text() -> None:
    info = ContextInfo(kind="list", total_chars=1_234_567, chunk_lengths=tuple(range(100, 130)))
    text = first_user_message("How many cats?", info)
    assert "list of 1,234,567 characters" in text
    assert "30 chunks" in text
    assert "100, 101," in text and "10 more, from 120 to 129" in text
    assert read_query(text) == "How many cats?"
    single = first_user_message("q\nwith lines", ContextInfo.of_text(50))
    assert "a str of 50 characters in total, in 1 chunk of these lengths: [50]" in single
    assert read_query(single) == "q\nwith lines"
    assert read_query("just a prompt") is None


def test_iteration_message_shows_code_truncated_output_and_errors() -> None:
    limits = NodeLimits(max_iterations=5, output_chars=100)
    cells = [
        CellReport(code="print('x' * 1000)", stdout="x" * 1000, chars_cut=50),
        CellReport(code="1/0", stdout="", error="Traceback ...\nZeroDivisionError: division by zero"),
        CellReport(code="y = 2", stdout="", stderr="warning!"),
    ]
    text = iteration_message(2, cells, limits)
    assert text.startswith("Iteration 2 ran 3 block(s)")
    assert "3 iterations left." in text
    assert "```repl\nprint('x' * 1000)\n```" in text
    assert "[... 900 characters cut ...]" in text
    assert "x" * 1000 not in text
    assert "[50 characters were already cut by the sandbox]" in text
    assert "The block failed:\nTraceback ...\nZeroDivisionError" in text
    assert "[stderr]\nwarning!" in text
    assert "Block 3:" in text


def test_iteration_message_without_code_asks_for_code() -> None:
    text = iteration_message(30, [], NodeLimits())
    assert "no ```repl block" in text and "0 iterations left." in text


def test_truncate_keeps_head_and_tail() -> None:
    assert truncate("short", 10) == "short"
    cut = truncate("a" * 10 + "b" * 10, 10)
    assert cut.startswith("aaaaa\n") and cut.endswith("\nbbbbb") and "[... 10 characters cut ...]" in cut


def test_conversation_layout_and_forced_final() -> None:
    limits = NodeLimits(max_iterations=2)
    info = ContextInfo.of_text(10)
    turns = [Turn("```repl\nx=1\n```", (CellReport("x=1", ""),)), Turn("no code")]
    messages = conversation(limits, "q?", info, turns, forced_final=True)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "user"]
    assert messages[0].content == system_prompt(limits)
    assert messages[1].content == first_user_message("q?", info)
    assert messages[3].content.startswith("Iteration 1 ran 1 block(s)")
    assert messages[5].content.startswith("Iteration 2: your reply had no")
    assert messages[6].content == forced_final_message()
    assert is_forced_final(messages[6].content) and not is_forced_final(messages[5].content)
    assert len(conversation(limits, "q?", info, [])) == 2


def test_leaf_messages_and_child_query() -> None:
    assert leaf_messages("count it\ndata") == (ChatMessage("user", "count it\ndata"),)
    assert child_query("\n  Count the cats.  \nthe data\nmore") == "Count the cats."
    assert len(child_query("x" * 10_000)) < 2_100
    assert child_query("") == ""


def test_protocol_modules_are_deterministic_code_only() -> None:
    """Workflow modules import these: no I/O, clock, randomness or litellm."""
    for module in (prompts_module, parse_module):
        tree = ast.parse(inspect.getsource(module))
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert imported <= {"__future__", "ast", "re", "collections", "dataclasses", "typing"}, imported
