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

Prices: ``register_scripted_provider(*models)`` writes each bare ``scripted/<policy>`` and each given
model string into ``litellm.model_cost``, so litellm reports a cost and the store's ``price_for`` finds
one; a model string with parameters must be registered (``complete.prepare_model`` does it) before
it is priced. An operator-registered price for the same string still takes precedence in the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

import httpx
import litellm
from litellm import exceptions as errors
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ModelResponse, Usage
from litellm.utils import custom_llm_setup

from orchestrator.llm import SCRIPTED_PROVIDER as PROVIDER
from orchestrator.llm.policies import RLM_POLICIES, PolicyParams, reply
from orchestrator.protocol.prompts import ChatMessage, Role

FAILURES = ("auth", "ratelimit", "server", "timeout", "connection", "badrequest", "notfound", "context")
POLICIES = (*RLM_POLICIES, "flaky", *(f"fail_{kind}" for kind in FAILURES))
DEFAULT_PRICE_IN = Decimal("0.25")  # USD per million prompt tokens
DEFAULT_PRICE_OUT = Decimal("2.00")  # USD per million completion tokens
_MILLION = Decimal(1_000_000)
_FAKE_URL = "http://scripted.invalid/v1/chat/completions"


@dataclass(frozen=True)
class ScriptedParams:
    policy: PolicyParams
    latency_ms: float = 0.0
    price_in: Decimal = DEFAULT_PRICE_IN
    price_out: Decimal = DEFAULT_PRICE_OUT
    chars_per_token: float = 4.0
    context_window: int = 400_000
    retry_after_s: float = 1.0
    fail: str = "ratelimit"
    times: int = 1
    then: str = "search"
    raw: Mapping[str, str] = field(default_factory=dict)


def _bad(model: str, problem: str) -> errors.BadRequestError:
    return errors.BadRequestError(
        message=f"scripted model {model!r}: {problem}", model=model, llm_provider=PROVIDER
    )


def _number(model: str, key: str, raw: str, *, minimum: float, integer: bool = False) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise _bad(model, f"{key}={raw!r} is not {kind}; e.g. {key}=10") from None
    if not math.isfinite(value) or value < minimum:
        raise _bad(model, f"{key}={raw!r} must be at least {minimum:g}")
    return value


def _price(model: str, key: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise _bad(
            model, f"{key}={raw!r} is not a price; give USD per million tokens, e.g. {key}=0.25"
        ) from None
    if not value.is_finite() or value < 0:
        raise _bad(model, f"{key}={raw!r} must be a price >= 0 (USD per million tokens)")
    return value


def parse_model(model: str) -> ScriptedParams:
    """Read ``scripted/<policy>?k=v&...`` (or the same without the ``scripted/`` prefix)."""
    name = model.removeprefix(f"{PROVIDER}/")
    policy, _, query = name.partition("?")
    if policy not in POLICIES:
        raise _bad(model, f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    known = {"latency_ms", "chunks", "parallel", "min_split", "price_in", "price_out", "chars_per_token",
             "context_window", "retry_after", "fail", "times", "then", "steps"}  # fmt: skip
    raw = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _bad(model, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    fail = raw.get("fail", "ratelimit")
    if fail not in FAILURES:
        raise _bad(model, f"fail={fail!r} is not a failure kind; use one of {', '.join(FAILURES)}")
    then = raw.get("then", "search")
    if then not in RLM_POLICIES:
        raise _bad(model, f"then={then!r} is not a policy; use one of {', '.join(RLM_POLICIES)}")
    parallel = raw.get("parallel", "1")
    if parallel not in ("0", "1"):
        raise _bad(model, f"parallel={parallel!r} must be 0 or 1")
    chunks = raw.get("chunks")
    policy_params = PolicyParams(
        policy=then if policy == "flaky" else policy,
        chunks=int(_number(model, "chunks", chunks, minimum=1, integer=True)) if chunks is not None else None,
        parallel=parallel == "1",
        min_split_chars=int(
            _number(model, "min_split", raw.get("min_split", "1000"), minimum=0, integer=True)
        ),
        steps=int(_number(model, "steps", raw.get("steps", "8"), minimum=1, integer=True)),
    )
    return ScriptedParams(
        policy=policy_params,
        latency_ms=_number(model, "latency_ms", raw.get("latency_ms", "0"), minimum=0),
        price_in=_price(model, "price_in", raw.get("price_in", str(DEFAULT_PRICE_IN))),
        price_out=_price(model, "price_out", raw.get("price_out", str(DEFAULT_PRICE_OUT))),
        chars_per_token=_number(model, "chars_per_token", raw.get("chars_per_token", "4"), minimum=0.1),
        context_window=int(
            _number(model, "context_window", raw.get("context_window", "400000"), minimum=1, integer=True)
        ),
        retry_after_s=_number(model, "retry_after", raw.get("retry_after", "1"), minimum=0),
        fail=fail if policy == "flaky" else policy.removeprefix("fail_"),
        times=int(_number(model, "times", raw.get("times", "1"), minimum=0, integer=True)),
        then=then,
        raw=raw,
    )


# ---------------------------------------------------------------- usage


def _tokens(text: str, chars_per_token: float) -> int:
    return math.ceil(len(text) / chars_per_token)


def _prompt_tokens(contents: Iterable[str], chars_per_token: float) -> int:
    # Like chat models: the text's tokens plus a few per message for the role framing.
    return sum(_tokens(c, chars_per_token) + 4 for c in contents) + 3


def estimate_prompt_tokens(model: str, messages: Sequence[ChatMessage]) -> int:
    """The prompt tokens the scripted model will report for ``messages``."""
    return _prompt_tokens((m.content for m in messages), parse_model(model).chars_per_token)


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
    params = parse_model(full)
    messages = _chat(raw_messages)
    prompt_tokens = _prompt_tokens((m.content for m in messages), params.chars_per_token)
    delay = params.latency_ms / 1000
    limit = _timeout_seconds(timeout)
    failure: Exception | None = None
    policy = full.removeprefix(f"{PROVIDER}/").partition("?")[0]
    if limit is not None and delay > limit:
        delay, failure = (
            limit,
            errors.Timeout(message=f"no reply within {limit:g} s", model=full, llm_provider=PROVIDER),
        )
    elif prompt_tokens > params.context_window:
        failure = errors.ContextWindowExceededError(
            message=f"prompt of {prompt_tokens} tokens exceeds the context window of {params.context_window}",
            model=full,
            llm_provider=PROVIDER,
            response=_response(400),
        )
    elif policy.startswith("fail_") or (
        policy == "flaky" and _flaky_should_fail(full, messages, params.times)
    ):
        failure = _failure(params.fail, full, params)
    if failure is not None:
        return _Plan("", prompt_tokens, 0, "error", delay, failure)
    text = reply(params.policy, messages)
    completion_tokens = _tokens(text, params.chars_per_token)
    finish = "stop"
    max_tokens = optional_params.get("max_tokens") or optional_params.get("max_completion_tokens")
    if isinstance(max_tokens, int) and completion_tokens > max_tokens:
        # A real model stops mid-reply at max_tokens; so does this one.
        text = text[: int(max_tokens * params.chars_per_token)]
        completion_tokens, finish = max_tokens, "length"
    return _Plan(text, prompt_tokens, completion_tokens, finish, delay, None)


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
    return {
        "litellm_provider": PROVIDER,
        "mode": "chat",
        "input_cost_per_token": float(params.price_in / _MILLION),
        "output_cost_per_token": float(params.price_out / _MILLION),
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
    new = [(model, parse_model(model)) for model in models if model not in litellm.model_cost]
    with _register_lock:
        if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
            litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": ScriptedLLM()})
            # litellm only routes to providers in its provider list; it refreshes that list at the
            # start of each call, but pricing lookups can come first.
            custom_llm_setup()  # type: ignore[no-untyped-call]
        if f"{PROVIDER}/{POLICIES[-1]}" not in litellm.model_cost:
            for policy in POLICIES:
                litellm.model_cost.setdefault(f"{PROVIDER}/{policy}", _price_entry(parse_model(policy)))
        for model, params in new:
            litellm.model_cost.setdefault(model, _price_entry(params))
