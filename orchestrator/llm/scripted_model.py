"""A scripted model string, read without litellm: its policy, parameters, price and token counts.

``scripted/<policy>?key=value&...`` names the stand-in model (the policies and parameters are listed in
``orchestrator.llm.scripted``, the litellm provider that answers it). The provider, the
OpenAI-compatible server (``rlm model serve``) and the store's ``price_for`` all read the string here,
so the server and ``rlm price show`` start without importing litellm, and all three agree on what a
string means and costs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from orchestrator.errors import RlmError
from orchestrator.llm import SCRIPTED_PROVIDER as PROVIDER
from orchestrator.llm import is_scripted
from orchestrator.llm.policies import RLM_POLICIES, PolicyParams
from orchestrator.protocol.prompts import ChatMessage

FAILURES = ("auth", "ratelimit", "server", "timeout", "connection", "badrequest", "notfound", "context")
POLICIES = (*RLM_POLICIES, "flaky", *(f"fail_{kind}" for kind in FAILURES))
DEFAULT_PRICE_IN = Decimal("0.25")  # USD per million prompt tokens
DEFAULT_PRICE_OUT = Decimal("2.00")  # USD per million completion tokens
_MILLION = Decimal(1_000_000)
_KNOWN = ("latency_ms", "chunks", "parallel", "min_split", "price_in", "price_out", "chars_per_token",
          "context_window", "retry_after", "fail", "times", "then", "steps")  # fmt: skip


class ScriptedModelError(RlmError):
    """A scripted model string that names no policy, or gives a parameter a bad value."""

    def __init__(self, model: str, problem: str) -> None:
        self.model = model
        self.problem = problem
        super().__init__(f"scripted model {model!r}: {problem}")


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

    def per_token_prices(self) -> tuple[float, float]:
        """USD per input and per output token, as the provider registers them in litellm's price map (a
        float there): the store reads the same floats, so a run is billed what litellm reports."""
        return float(self.price_in / _MILLION), float(self.price_out / _MILLION)


def _number(model: str, key: str, raw: str, *, minimum: float, integer: bool = False) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise ScriptedModelError(model, f"{key}={raw!r} is not {kind}; e.g. {key}=10") from None
    if not math.isfinite(value) or value < minimum:
        raise ScriptedModelError(model, f"{key}={raw!r} must be at least {minimum:g}")
    return value


def _price(model: str, key: str, raw: str) -> Decimal:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ScriptedModelError(
            model, f"{key}={raw!r} is not a price; give USD per million tokens, e.g. {key}=0.25"
        ) from None
    if not value.is_finite() or value < 0:
        raise ScriptedModelError(model, f"{key}={raw!r} must be a price >= 0 (USD per million tokens)")
    return value


def parse_model(model: str) -> ScriptedParams:
    """Read ``scripted/<policy>?k=v&...`` (or the same without the ``scripted/`` prefix)."""
    name = model.removeprefix(f"{PROVIDER}/")
    policy, _, query = name.partition("?")
    if policy not in POLICIES:
        raise ScriptedModelError(model, f"unknown policy {policy!r}; use one of {', '.join(POLICIES)}")
    raw = dict(parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(raw) - set(_KNOWN))
    if unknown:
        raise ScriptedModelError(
            model, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}"
        )
    fail = raw.get("fail", "ratelimit")
    if fail not in FAILURES:
        kinds = ", ".join(FAILURES)
        raise ScriptedModelError(model, f"fail={fail!r} is not a failure kind; use one of {kinds}")
    then = raw.get("then", "search")
    if then not in RLM_POLICIES:
        policies = ", ".join(RLM_POLICIES)
        raise ScriptedModelError(model, f"then={then!r} is not a policy; use one of {policies}")
    parallel = raw.get("parallel", "1")
    if parallel not in ("0", "1"):
        raise ScriptedModelError(model, f"parallel={parallel!r} must be 0 or 1")
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


def check(*models: str) -> None:
    """Refuse a scripted model string that its first call would refuse, before a run or session starts;
    any other model string is the provider's to judge, at the call."""
    for model in models:
        if is_scripted(model):
            parse_model(model)


def count_tokens(text: str, chars_per_token: float) -> int:
    return math.ceil(len(text) / chars_per_token)


def prompt_tokens(contents: Iterable[str], chars_per_token: float) -> int:
    # Like chat models: the text's tokens plus a few per message for the role framing.
    return sum(count_tokens(c, chars_per_token) + 4 for c in contents) + 3


def estimate_prompt_tokens(model: str, messages: Sequence[ChatMessage]) -> int:
    """The prompt tokens the scripted model will report for ``messages``."""
    return prompt_tokens((m.content for m in messages), parse_model(model).chars_per_token)
