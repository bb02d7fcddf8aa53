"""The scripted model: a litellm custom provider ``scripted`` that stands in for a real LLM.

``litellm.completion(model="scripted/<policy>?key=value&...")`` goes through litellm's real code path
(provider routing, usage, cost, exception mapping); only the text comes from a policy
(``orchestrator.llm.policies``) instead of a network call. Policies write real code for the REPL; leaf
prompts are answered by computing over the prompt's text, so every answer comes from real input.

Policies: ``search``, ``mapreduce``, ``recurse``, ``leaf`` (answers directly), ``loop`` (never answers),
``spin`` (a cell that never ends), ``partial`` (keeps a provisional answer, never ready), ``code``
(runs the query itself as its first cell), ``long`` (notes the value asked for, reads on for ``steps``
iterations, then answers from the REPL variable: outgrows a small ``context_window``),
``flaky`` (fails ``times`` times per conversation with ``fail``,
then behaves as policy ``then``), and ``fail_<kind>`` raising litellm's own exception classes:
``fail_auth``, ``fail_ratelimit``, ``fail_server``, ``fail_timeout``, ``fail_connection``,
``fail_badrequest``, ``fail_notfound``, ``fail_context``.

Parameters (query string of the model name): ``latency_ms``, ``chunks`` (map chunks; recurse parts),
``parallel`` (0/1: recurse with ``rlm_query_batched`` or one ``rlm_query`` per part; mapreduce with
``llm_query_batched`` or one timed ``llm_query`` per chunk),
``min_split``, ``price_in`` / ``price_out`` (USD per million tokens), ``chars_per_token``,
``context_window`` (tokens), ``steps`` (policy ``long``), ``retry_after`` (seconds, on rate limits),
``fail``, ``times``, ``then``.

The string itself is read by ``orchestrator.llm.scripted_model``, without litellm.

Prices: ``register_scripted_provider(*models)`` writes each bare ``scripted/<policy>`` and each given
model string into ``litellm.model_cost``, so litellm reports a cost (``complete.prepare_model`` does it
before a call); the store's ``price_for`` reads the same price from the string. An operator-registered
price for the same string still takes precedence in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import litellm
from litellm import exceptions as errors
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ModelResponse, Usage
from litellm.utils import custom_llm_setup

from orchestrator.llm import SCRIPTED_PROVIDER as PROVIDER
from orchestrator.llm.policies import reply
from orchestrator.llm.scripted_model import (
    POLICIES,
    ScriptedModelError,
    ScriptedParams,
    count_tokens,
    parse_model,
    prompt_tokens,
)
from orchestrator.protocol.prompts import ChatMessage, Role

_FAKE_URL = "http://scripted.invalid/v1/chat/completions"


def _parsed(model: str) -> ScriptedParams:
    """``parse_model``, failing as a provider's call fails on a bad request: litellm's BadRequestError."""
    try:
        return parse_model(model)
    except ScriptedModelError as exc:
        raise errors.BadRequestError(message=str(exc), model=model, llm_provider=PROVIDER) from None


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _role(raw: object) -> Role:
    if raw in ("system", "developer"):
        return "system"
    return "assistant" if raw == "assistant" else "user"


def _chat(messages: Sequence[Mapping[str, Any]]) -> tuple[ChatMessage, ...]:
    return tuple(ChatMessage(_role(m.get("role")), _text_of(m.get("content"))) for m in messages)


# ---------------------------------------------------------------- failures


_flaky_lock = threading.Lock()
_flaky_counts: dict[str, int] = {}


def _response(status: int, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=dict(headers or {}), request=httpx.Request("POST", _FAKE_URL))


def _failure(kind: str, model: str, params: ScriptedParams) -> Exception:
    """The litellm exception a real provider call would end in, for failure ``kind``."""
    msg = f"scripted {kind} failure"
    if kind == "auth":
        return errors.AuthenticationError(
            message=f"{msg}: invalid API key", llm_provider=PROVIDER, model=model, response=_response(401)
        )
    if kind == "ratelimit":
        headers = {"retry-after": f"{params.retry_after_s:g}"}
        return errors.RateLimitError(
            message=f"{msg}: slow down", llm_provider=PROVIDER, model=model, response=_response(429, headers)
        )
    if kind == "server":
        return errors.InternalServerError(
            message=f"{msg}: internal error", llm_provider=PROVIDER, model=model, response=_response(500)
        )
    if kind == "timeout":
        return errors.Timeout(message=f"{msg}: request timed out", model=model, llm_provider=PROVIDER)
    if kind == "connection":
        return errors.APIConnectionError(
            message=f"{msg}: connection refused", llm_provider=PROVIDER, model=model
        )
    if kind == "notfound":
        return errors.NotFoundError(
            message=f"{msg}: no such model", model=model, llm_provider=PROVIDER, response=_response(404)
        )
    if kind == "context":
        return errors.ContextWindowExceededError(
            message=f"{msg}: prompt too long", model=model, llm_provider=PROVIDER, response=_response(400)
        )
    return errors.BadRequestError(
        message=f"{msg}: invalid request", model=model, llm_provider=PROVIDER, response=_response(400)
    )


def _flaky_should_fail(model: str, messages: Sequence[ChatMessage], times: int) -> bool:
    digest = hashlib.sha256(model.encode())
    for m in messages:
        digest.update(f"\0{m.role}\0{m.content}".encode())
    key = digest.hexdigest()
    with _flaky_lock:
        seen = _flaky_counts.get(key, 0)
        _flaky_counts[key] = seen + 1
    return seen < times


# ---------------------------------------------------------------- the provider


@dataclass(frozen=True)
class _Plan:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    delay_s: float
    failure: Exception | None


def _timeout_seconds(timeout: object) -> float | None:
    if isinstance(timeout, int | float):
        return float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if isinstance(read, int | float) else None


def _plan(
    model: str, raw_messages: Sequence[Mapping[str, Any]], optional_params: Mapping[str, Any], timeout: object
) -> _Plan:
    full = f"{PROVIDER}/{model}"
    params = _parsed(full)
    messages = _chat(raw_messages)
    prompt_count = prompt_tokens((m.content for m in messages), params.chars_per_token)
    delay = params.latency_ms / 1000
    limit = _timeout_seconds(timeout)
    failure: Exception | None = None
    policy = full.removeprefix(f"{PROVIDER}/").partition("?")[0]
    if limit is not None and delay > limit:
        delay, failure = (
            limit,
            errors.Timeout(message=f"no reply within {limit:g} s", model=full, llm_provider=PROVIDER),
        )
    elif prompt_count > params.context_window:
        failure = errors.ContextWindowExceededError(
            message=f"prompt of {prompt_count} tokens exceeds the context window of {params.context_window}",
            model=full,
            llm_provider=PROVIDER,
            response=_response(400),
        )
    elif policy.startswith("fail_") or (
        policy == "flaky" and _flaky_should_fail(full, messages, params.times)
    ):
        failure = _failure(params.fail, full, params)
    if failure is not None:
        return _Plan("", prompt_count, 0, "error", delay, failure)
    text = reply(params.policy, messages)
    completion_tokens = count_tokens(text, params.chars_per_token)
    finish = "stop"
    max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
    if isinstance(max_tokens, int) and completion_tokens > max_tokens:
        # A real model stops mid-reply at max_tokens; so does this one.
        text = text[: int(max_tokens * params.chars_per_token)]
        completion_tokens, finish = max_tokens, "length"
    return _Plan(text, prompt_count, completion_tokens, finish, delay, None)


def _fill(model: str, response: ModelResponse, plan: _Plan) -> ModelResponse:
    choice = response.choices[0]
    choice.message.content = plan.text
    choice.finish_reason = plan.finish_reason  # type: ignore[assignment]
    response.model = f"{PROVIDER}/{model}"
    usage = Usage(
        prompt_tokens=plan.prompt_tokens,
        completion_tokens=plan.completion_tokens,
        total_tokens=plan.prompt_tokens + plan.completion_tokens,
    )
    response.usage = usage  # type: ignore[attr-defined]
    return response


class ScriptedLLM(CustomLLM):
    """litellm calls these with the model name after ``scripted/``."""

    def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        plan = _plan(model, messages, kwargs.get("optional_params") or {}, kwargs.get("timeout"))
        if plan.delay_s:
            time.sleep(plan.delay_s)
        if plan.failure is not None:
            raise plan.failure
        return _fill(model, kwargs["model_response"], plan)

    async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> ModelResponse:
        plan = _plan(model, messages, kwargs.get("optional_params") or {}, kwargs.get("timeout"))
        if plan.delay_s:
            await asyncio.sleep(plan.delay_s)
        if plan.failure is not None:
            raise plan.failure
        return _fill(model, kwargs["model_response"], plan)


# ---------------------------------------------------------------- registration

_register_lock = threading.Lock()


def _price_entry(params: ScriptedParams) -> dict[str, Any]:
    input_cost, output_cost = params.per_token_prices()
    return {
        "litellm_provider": PROVIDER,
        "mode": "chat",
        "input_cost_per_token": input_cost,
        "output_cost_per_token": output_cost,
        "cache_creation_input_token_cost": 0.0,
        "cache_read_input_token_cost": 0.0,
        "max_input_tokens": params.context_window,
        "max_tokens": params.context_window,
    }


def register_scripted_provider(*models: str) -> None:
    """Make ``scripted/...`` models callable through litellm and priced in ``litellm.model_cost``.

    Idempotent and cheap: call it at start-up, and with a model string before pricing or calling it
    (parameters in the string, e.g. a price, make it a distinct entry). Raises litellm's
    BadRequestError for a malformed scripted model string.
    """
    new = [(model, _parsed(model)) for model in models if model not in litellm.model_cost]
    with _register_lock:
        if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
            litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": ScriptedLLM()})
            # litellm only routes to providers in its provider list; it refreshes that list at the
            # start of each call, but pricing lookups can come first.
            custom_llm_setup()  # type: ignore[no-untyped-call]
        if f"{PROVIDER}/{POLICIES[-1]}" not in litellm.model_cost:
            for policy in POLICIES:
                litellm.model_cost.setdefault(f"{PROVIDER}/{policy}", _price_entry(_parsed(policy)))
        for model, params in new:
            litellm.model_cost.setdefault(model, _price_entry(params))
