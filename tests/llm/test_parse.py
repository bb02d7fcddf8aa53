"""Reply parsing: code blocks in order, plain-text final answers."""

from __future__ import annotations

from orchestrator.protocol.parse import forced_final_answer, parse_reply


def test_repl_and_python_blocks_run_in_order_other_fences_do_not() -> None:
    reply = """Let me look.
```repl
x = 1
```
Some prose.
```python
y = x + 1
```
```text
not code
```
```py
print(y)
```
```
plain fence, not code
```
"""
    parsed = parse_reply(reply)
    assert [(b.index, b.tag, b.code) for b in parsed.blocks] == [
        (0, "repl", "x = 1"),
        (1, "python", "y = x + 1"),
        (2, "py", "print(y)"),
    ]
    assert parsed.final_text is None and parsed.final_var is None


def test_block_keeps_inner_blank_lines_and_indentation() -> None:
    parsed = parse_reply("```repl\nfor i in range(2):\n    print(i)\n\nz = 3\n```")
    assert parsed.blocks[0].code == "for i in range(2):\n    print(i)\n\nz = 3"


def test_longer_fence_can_contain_a_shorter_one() -> None:
    parsed = parse_reply('````repl\ns = """\n```\n"""\n````')
    assert parsed.blocks[0].code == 's = """\n```\n"""'


def test_unclosed_block_is_dropped_and_empty_blocks_are_skipped() -> None:
    parsed = parse_reply("```repl\n\n```\n```repl\nx = 1\n```\n```repl\nhalf = [1, 2,")
    assert [b.code for b in parsed.blocks] == ["x = 1"]


def test_tag_is_case_insensitive_and_may_carry_attributes() -> None:
    parsed = parse_reply("```REPL title=step\nx = 2\n```")
    assert parsed.blocks[0].tag == "repl" and parsed.blocks[0].code == "x = 2"


def test_plain_text_final_outside_code_is_found_but_not_inside_code() -> None:
    assert parse_reply("```repl\nFINAL(1)\n```").final_text is None
    parsed = parse_reply("Done.\nFINAL(the answer is 42)\n")
    assert parsed.final_text == "the answer is 42"
    assert parse_reply('FINAL("quoted")').final_text == "quoted"
    assert parse_reply("FINAL(17)").final_text == "17"
    assert parse_reply("FINAL_VAR(result)").final_var == "result"
    assert parse_reply('FINAL_VAR("result")').final_var == "result"


def test_forced_final_answer_forms() -> None:
    assert forced_final_answer("FINAL(4817305)") == "4817305"
    assert forced_final_answer("Thinking...\nFINAL ANSWER: 12 apples") == "12 apples"
    assert forced_final_answer("  The answer is 7.\n") == "The answer is 7."
    assert forced_final_answer("```repl\nprint(1)\n```\nIt is 3.") == "It is 3."
    assert forced_final_answer("```repl\nprint(1)\n```") is None
    assert forced_final_answer("") is None
