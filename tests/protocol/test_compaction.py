"""The compacted conversation and the summary request (pure), and the scripted model's replies to them."""

from __future__ import annotations

from orchestrator.llm.policies import PolicyParams, reply, view_of
from orchestrator.protocol.compaction import (
    KEEP_RECENT,
    NumberedTurn,
    Summary,
    compacted_conversation,
    is_summary_request,
    read_compacted,
    summary_message,
    summary_request,
    to_cover,
)
from orchestrator.protocol.prompts import (
    CellReport,
    ContextInfo,
    NodeLimits,
    Turn,
    conversation,
    first_user_message,
    is_forced_final,
    read_query,
)

LIMITS = NodeLimits(max_iterations=10)
CONTEXT = ContextInfo.of_text(50_000)
QUERY = "What is the magic number?"


def _turns(n: int) -> list[NumberedTurn]:
    return [
        NumberedTurn(
            i,
            Turn(
                reply=f"reply {i}\n```repl\nvalue_{i} = {i}\nprint(value_{i})\n```",
                cells=(CellReport(code=f"value_{i} = {i}\nprint(value_{i})", stdout=f"out {i}"),),
            ),
        )
        for i in range(1, n + 1)
    ]


def test_without_a_summary_it_is_the_plain_conversation() -> None:
    turns = _turns(3)
    plain = conversation(LIMITS, QUERY, CONTEXT, [t.turn for t in turns], forced_final=True)
    assert compacted_conversation(LIMITS, QUERY, CONTEXT, None, turns, forced_final=True) == plain


def test_the_summary_replaces_the_iterations_it_covers() -> None:
    turns = _turns(5)
    messages = compacted_conversation(LIMITS, QUERY, CONTEXT, Summary(last=3, text="learned X"), turns)
    assert [m.role for m in messages] == ["system", "user", "user", "assistant", "user", "assistant", "user"]
    assert messages[:2] == conversation(LIMITS, QUERY, CONTEXT, [])
    assert read_compacted(messages[2].content) == 3
    assert "learned X" in messages[2].content
    # The kept iterations keep their own numbers (and the count of iterations left).
    assert messages[3].content.startswith("reply 4")
    assert (
        messages[4].content.startswith("Iteration 4 ran 1 block(s)")
        and "6 iterations left" in messages[4].content
    )
    assert messages[6].content.startswith("Iteration 5 ")
    assert not any("reply 3" in m.content or "reply 1" in m.content for m in messages)


def test_what_a_compaction_covers_keeps_the_most_recent_turns() -> None:
    assert [t.number for t in to_cover(None, _turns(5))] == list(range(1, 5 - KEEP_RECENT + 1))
    # Two fresh turns: all but the last one; one fresh turn: nothing to compact.
    assert [t.number for t in to_cover(Summary(3, "s"), _turns(5))] == [4]
    assert to_cover(Summary(4, "s"), _turns(5)) == []
    assert to_cover(None, []) == []


def test_the_summary_request_holds_the_previous_summary_and_the_covered_turns() -> None:
    turns = _turns(6)
    covered = to_cover(Summary(2, "old summary"), turns)
    request = summary_request(LIMITS, QUERY, CONTEXT, Summary(2, "old summary"), covered)
    assert is_summary_request(request) and len(request) == 2
    body = request[1].content
    assert first_user_message(QUERY, CONTEXT) in body
    assert summary_message(Summary(2, "old summary")) in body
    assert "reply 3" in body and "reply 4" in body and "reply 5" not in body and "reply 1" not in body
    assert body.endswith("iterations 1..4 as asked.")
    # An RLM conversation is never taken for a summary request.
    assert not is_summary_request(conversation(LIMITS, QUERY, CONTEXT, []))


def test_the_scripted_model_summarises_the_variables_and_counts_compacted_iterations() -> None:
    first = summary_request(LIMITS, QUERY, CONTEXT, None, to_cover(None, _turns(4)))
    text = reply(PolicyParams(policy="search"), first)
    assert "REPL variables set: value_1, value_2" in text
    # A second compaction keeps what the first summary named.
    second = summary_request(LIMITS, QUERY, CONTEXT, Summary(2, text), to_cover(Summary(2, text), _turns(5)))
    assert "REPL variables set: value_1, value_2, value_3" in reply(PolicyParams(policy="loop"), second)
    view = view_of(compacted_conversation(LIMITS, QUERY, CONTEXT, Summary(3, text), _turns(5)))
    assert view.iteration == 5 and read_query(first_user_message(QUERY, CONTEXT)) == view.query
    assert not is_forced_final(view.last_user)


def test_policy_long_notes_reads_on_then_answers_from_its_variable() -> None:
    params = PolicyParams(policy="long", steps=4)
    start = reply(params, conversation(LIMITS, QUERY, CONTEXT, []))
    assert "found = " in start and "FINAL" not in start
    reading = reply(params, compacted_conversation(LIMITS, QUERY, CONTEXT, Summary(1, "s"), _turns(2)))
    assert "print(str(context)[1500:3000])" in reading
    answer = reply(params, compacted_conversation(LIMITS, QUERY, CONTEXT, Summary(2, "s"), _turns(3)))
    assert 'FINAL_VAR("found")' in answer


def test_the_scripted_summary_leaves_out_deleted_and_private_variables() -> None:
    code = "_tmp = 1\nchunk = 'x'\nkept = 2\ndel chunk"
    covered = [NumberedTurn(1, Turn(reply=f"```repl\n{code}\n```", cells=()))]
    text = reply(PolicyParams(policy="search"), summary_request(LIMITS, QUERY, CONTEXT, None, covered))
    assert "REPL variables set: kept\n" in text and text.startswith("Iterations 1..1 ")
