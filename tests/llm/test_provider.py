"""The scripted model through litellm's real completion / acompletion path."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import litellm
import pytest

from orchestrator.llm.complete import CompletionRequest, complete, count_prompt_tokens, prepare_model
from orchestrator.llm.scripted import register_scripted_provider
from orchestrator.llm.scripted_model import ScriptedModelError, estimate_prompt_tokens, parse_model
from orchestrator.protocol.prompts import ChatMessage, ContextInfo, NodeLimits, conversation, leaf_messages

LEAF_PROMPT = "Count the matches of the regex /cat/ in the text after this line.\na cat, a dog, a cat"


def rlm_messages(query: str = "What is the magic number?") -> tuple[ChatMessage, ...]:
    return conversation(NodeLimits(), query, ContextInfo.of_text(1_000), [])


def test_sync_completion_through_litellm_returns_text_usage_and_cost() -> None:
    response = litellm.completion(
        model="scripted/leaf", messages=[{"role": "user", "content": LEAF_PROMPT}], num_retries=0
    )
    assert response.choices[0].message.content == "2"
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    expected_prompt = estimate_prompt_tokens("scripted/leaf", leaf_messages(LEAF_PROMPT))
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected_prompt, 1)
    expected_cost = expected_prompt * 0.25e-6 + 1 * 2e-6
    assert response._hidden_params["response_cost"] == pytest.approx(expected_cost)


async def test_async_completion_through_litellm_writes_repl_code() -> None:
    messages = [{"role": m.role, "content": m.content} for m in rlm_messages()]
    response = await litellm.acompletion(model="scripted/search", messages=messages, num_retries=0)
    text = response.choices[0].message.content
    assert "```repl" in text and "FINAL(_m.group(1))" in text
    assert response.usage.completion_tokens == -(-len(text) // 4)


async def test_complete_reports_tokens_and_the_cost_of_a_priced_model_string() -> None:
    model = "scripted/leaf?price_in=3&price_out=15&chars_per_token=2"
    result = await complete(CompletionRequest(model=model, messages=leaf_messages(LEAF_PROMPT)))
    assert result.text == "2"
    assert result.prompt_tokens == count_prompt_tokens(model, leaf_messages(LEAF_PROMPT))
    expected = Decimal(result.prompt_tokens) * Decimal("3e-6") + Decimal(result.completion_tokens) * Decimal(
        "15e-6"
    )
    assert result.reported_cost_usd is not None
    assert abs(result.reported_cost_usd - expected) < Decimal("1e-12")
    entry = litellm.model_cost[model]
    assert entry["input_cost_per_token"] == pytest.approx(3e-6)
    assert entry["output_cost_per_token"] == pytest.approx(15e-6)


async def test_simulated_latency_is_applied() -> None:
    result = await complete(
        CompletionRequest(model="scripted/leaf?latency_ms=200", messages=leaf_messages(LEAF_PROMPT))
    )
    assert result.duration_s >= 0.2
    started = time.monotonic()
    litellm.completion(
        model="scripted/leaf?latency_ms=150",
        messages=[{"role": "user", "content": LEAF_PROMPT}],
        num_retries=0,
    )
    assert time.monotonic() - started >= 0.15


async def test_max_tokens_cuts_the_reply_like_a_real_model() -> None:
    result = await complete(
        CompletionRequest(model="scripted/search", messages=rlm_messages(), max_tokens=20)
    )
    assert result.finish_reason == "length"
    assert result.completion_tokens == 20
    assert len(result.text) == 80


def test_register_is_idempotent_and_prices_every_bare_policy() -> None:
    register_scripted_provider()
    register_scripted_provider("scripted/mapreduce?chunks=7")
    register_scripted_provider("scripted/mapreduce?chunks=7")
    assert [item["provider"] for item in litellm.custom_provider_map].count("scripted") == 1
    assert "scripted" in litellm.provider_list
    for policy in ("search", "mapreduce", "recurse", "leaf", "loop", "spin", "fail_auth"):
        assert litellm.model_cost[f"scripted/{policy}"]["input_cost_per_token"] == pytest.approx(0.25e-6)
    assert "scripted/mapreduce?chunks=7" in litellm.model_cost
    prepare_model("openai/gpt-4o-mini")  # not scripted: nothing to do, no error


def test_parameters_are_parsed_and_bad_ones_rejected_clearly() -> None:
    params = parse_model("scripted/mapreduce?chunks=100&latency_ms=200&price_in=1.5")
    assert (params.policy.policy, params.policy.chunks, params.latency_ms, params.price_in) == (
        "mapreduce",
        100,
        200.0,
        Decimal("1.5"),
    )
    assert parse_model("scripted/flaky?fail=server&times=3&then=mapreduce").policy.policy == "mapreduce"
    for model, message in (
        ("scripted/nope", "unknown policy 'nope'"),
        ("scripted/search?chunk=3", "unknown parameter(s) chunk"),
        ("scripted/mapreduce?chunks=0", "chunks='0' must be at least 1"),
        ("scripted/mapreduce?chunks=many", "chunks='many' is not a whole number"),
        ("scripted/leaf?price_in=-1", "must be a price >= 0"),
        ("scripted/flaky?fail=gremlins", "fail='gremlins' is not a failure kind"),
        ("scripted/recurse?parallel=yes", "parallel='yes' must be 0 or 1"),
    ):
        with pytest.raises(ScriptedModelError, match=re.escape(message)):
            parse_model(model)


def test_the_tokenizer_estimate_matches_reported_usage_for_rlm_turns() -> None:
    messages = rlm_messages("How many times does 'x' appear?")
    response = litellm.completion(
        model="scripted/mapreduce",
        messages=[{"role": m.role, "content": m.content} for m in messages],
        num_retries=0,
    )
    assert response.usage.prompt_tokens == count_prompt_tokens("scripted/mapreduce", messages)


def test_count_prompt_tokens_uses_litellm_for_known_models_and_falls_back() -> None:
    messages = (ChatMessage("user", "hello world " * 50),)
    assert count_prompt_tokens("gpt-4o-mini", messages) == litellm.token_counter(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello world " * 50}]
    )
    assert count_prompt_tokens("some-provider/unknown-model", messages) > 0


def test_a_prompt_counted_again_is_not_tokenized_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``generate`` counts its messages to plan a compaction and again to reserve: one tokenization."""
    calls: list[str] = []
    real = litellm.token_counter

    def counting(**kwargs: object) -> int:
        calls.append(str(kwargs["model"]))
        return int(real(**kwargs))

    monkeypatch.setattr(litellm, "token_counter", counting)
    messages = (ChatMessage("user", f"a prompt no other test counts {time.time()} " * 20),)
    first = count_prompt_tokens("gpt-4o-mini", messages)
    again = count_prompt_tokens("gpt-4o-mini", tuple(ChatMessage(m.role, m.content) for m in messages))
    other_model = count_prompt_tokens("gpt-4o", messages)
    longer = count_prompt_tokens("gpt-4o-mini", (*messages, ChatMessage("user", "and one more")))

    assert (
        again
        == first
        == real(model="gpt-4o-mini", messages=[{"role": "user", "content": messages[0].content}])
    )
    assert other_model > 0 and longer > first
    assert calls == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
