"""One LLM call through litellm, with failures sorted into retryable and final.

litellm runs with ``num_retries=0``: Temporal owns retries, so this module only says which failures
are worth retrying (``ModelCallError.retryable``) and how long the provider asked us to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import litellm
import structlog
from litellm import exceptions as errors

from orchestrator.llm import credentials, is_scripted, scripted, scripted_model
from orchestrator.protocol.prompts import ChatMessage

log = structlog.get_logger(__name__)

# litellm prints a "Give Feedback / Get Help" banner to stdout on every mapped exception.
litellm.suppress_debug_info = True


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    timeout_s: float = 600.0
    api_base: str | None = None
    api_key: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class CompletionResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    # The cost litellm computed from its price map, when it knows the model; the ledger prices
    # calls itself (price_for), this is for cross-checking and display.
    reported_cost_usd: Decimal | None
    finish_reason: str | None
    duration_s: float


class ModelCallError(Exception):
    """A model call failed; ``retryable`` says whether trying again later can help."""

    def __init__(
        self,
        *,
        kind: str,
        retryable: bool,
        message: str,
        model: str,
        retry_after_s: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.message = message
        self.model = model
        self.retry_after_s = retry_after_s
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only constructors do not pickle by default; thread and process
        # pools (and Temporal's failure converter) need them to.
        return (
            _rebuild_error,
            (self.kind, self.retryable, self.message, self.model, self.retry_after_s, self.status_code),
        )

    def __str__(self) -> str:
        return f"{self.kind} from model {self.model!r}: {self.message}"


def _rebuild_error(
    kind: str, retryable: bool, message: str, model: str, retry_after_s: float | None, status_code: int | None
) -> ModelCallError:
    return ModelCallError(
        kind=kind,
        retryable=retryable,
        message=message,
        model=model,
        retry_after_s=retry_after_s,
        status_code=status_code,
    )


# Most specific first: ContextWindowExceededError is a BadRequestError, Timeout an APIConnectionError.
_KINDS: tuple[tuple[type[BaseException], str, bool], ...] = (
    (errors.ContextWindowExceededError, "context_window", False),
    (errors.ContentPolicyViolationError, "content_policy", False),
    (errors.AuthenticationError, "auth", False),
    (errors.PermissionDeniedError, "permission", False),
    (errors.NotFoundError, "not_found", False),
    (errors.RateLimitError, "rate_limit", True),
    (errors.Timeout, "timeout", True),
    (errors.InternalServerError, "server", True),
    (errors.ServiceUnavailableError, "server", True),
    (errors.BadGatewayError, "server", True),
    (errors.APIConnectionError, "connection", True),
    (errors.BadRequestError, "bad_request", False),
    (errors.UnprocessableEntityError, "bad_request", False),
    (errors.BudgetExceededError, "budget", False),
)


def _headers(exc: BaseException) -> dict[str, str]:
    found: dict[str, str] = {}
    response = getattr(exc, "response", None)
    for source in (
        getattr(response, "headers", None),
        getattr(exc, "litellm_response_headers", None),
        getattr(exc, "headers", None),
    ):
        if source:
            found.update({str(k).lower(): str(v) for k, v in dict(source).items()})
    return found


def retry_after_seconds(headers: dict[str, str], now: datetime | None = None) -> float | None:
    """Seconds the provider asked to wait: ``retry-after-ms``, or ``retry-after`` in seconds or as a date."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify(
    exc: BaseException, model: str, *, api_key: str | None = None, api_base: str | None = None
) -> ModelCallError:
    """Map a litellm exception (or anything else a call raised) to a ModelCallError.

    A missing, rejected or forbidden key is final whatever class litellm wrapped it in, and its
    message names the environment variable to set or check (``api_key``/``api_base``: the call's)."""
    status = getattr(exc, "status_code", None)
    status_code = status if isinstance(status, int) else None
    text = str(getattr(exc, "message", None) or exc).strip()
    message = text.splitlines()[0] if text else type(exc).__name__
    kind, retryable = "unknown", False
    for cls, name, retry in _KINDS:
        if isinstance(exc, cls):
            kind, retryable = name, retry
            break
    else:
        if isinstance(exc, errors.APIError):
            # A bare APIError carries only a status: 5xx, 408 and 429 are the provider's transient states.
            retryable = status_code is None or status_code >= 500 or status_code in (408, 429)
            kind = "server" if retryable else "bad_request"
    final = kind in ("bad_request", "unknown")
    if credentials.says_missing(text) or status_code == 401 or (final and credentials.says_rejected(text)):
        kind, retryable = "auth", False
    elif status_code == 403 and final:
        kind, retryable = "permission", False
    if kind in ("auth", "permission"):
        message = credentials.describe(kind, text, model, status_code, api_key=api_key, api_base=api_base)
    return ModelCallError(
        kind=kind,
        retryable=retryable,
        message=message,
        model=model,
        retry_after_s=retry_after_seconds(_headers(exc)) if retryable else None,
        status_code=status_code,
    )


def prepare_model(model: str) -> None:
    """Make ``model`` callable through litellm in this process, litellm reporting its cost: registers the
    scripted provider (and the price of this exact scripted model string) when it is a scripted model;
    nothing otherwise.
    Raises ModelCallError (kind ``bad_request``) for a malformed scripted model string."""
    if not is_scripted(model):
        return
    try:
        scripted.register_scripted_provider(model)
    except errors.BadRequestError as exc:
        raise classify(exc, model) from exc


class ModelGate:
    """At most ``limit`` calls of each model in flight at once in this process (0: no limit).

    A worker's calls of one model queue here, on its event loop (a waiting call holds no thread), so
    however many runs and nodes a worker serves, a provider sees at most ``limit`` of its requests at
    once, and a fleet at most workers x ``limit``."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"model concurrency {limit} must be >= 0 (0: no limit)")
        self.limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}

    @contextlib.asynccontextmanager
    async def slot(self, model: str) -> AsyncIterator[None]:
        if self.limit == 0:
            yield
            return
        slots = self._slots.get(model)
        if slots is None:
            slots = self._slots[model] = asyncio.Semaphore(self.limit)
        if slots.locked():
            log.debug("llm.queued", model=model, limit=self.limit)
        async with slots:
            yield


def _as_dicts(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _decimal(value: object) -> Decimal | None:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    try:
        return Decimal(repr(value))
    except InvalidOperation:
        return None


# litellm keeps one HTTP client per distinct set of client settings, the timeout among them. A call's
# timeout follows its run's deadline, so in a run's last minutes every call would open a client of its
# own (and an HTTP session that is never closed). litellm gets the timeout rounded up to this step;
# the call's own timeout is enforced around it.
CLIENT_TIMEOUT_STEP_S = 60.0


def client_timeout_s(timeout_s: float) -> float:
    """The timeout litellm's HTTP client is built with for a call that must end within ``timeout_s``."""
    return max(1, math.ceil(timeout_s / CLIENT_TIMEOUT_STEP_S)) * CLIENT_TIMEOUT_STEP_S


async def complete(req: CompletionRequest) -> CompletionResult:
    """Call the model once. Raises ModelCallError for every failure of the call itself."""
    kwargs: dict[str, Any] = {
        "model": req.model,
        "messages": _as_dicts(req.messages),
        "num_retries": 0,
        "timeout": client_timeout_s(req.timeout_s),
    }
    for name, value in (
        ("max_tokens", req.max_tokens),
        ("api_base", req.api_base),
        ("api_key", req.api_key),
        ("temperature", req.temperature),
    ):
        if value is not None:
            kwargs[name] = value
    started = time.monotonic()
    prepare_model(req.model)
    if not is_scripted(req.model):
        missing = credentials.missing_key(req.model, api_key=req.api_key, api_base=req.api_base)
        if missing is not None:
            raise _logged(ModelCallError(kind="auth", retryable=False, message=missing, model=req.model))
    try:
        async with asyncio.timeout(req.timeout_s):
            response = await litellm.acompletion(**kwargs)
    except TimeoutError as exc:
        raise _logged(
            ModelCallError(
                kind="timeout",
                retryable=True,
                message=f"no reply within {req.timeout_s:g} s",
                model=req.model,
            )
        ) from exc
    except Exception as exc:
        raise _logged(classify(exc, req.model, api_key=req.api_key, api_base=req.api_base)) from exc
    duration = time.monotonic() - started
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    result = CompletionResult(
        text=choice.message.content or "",
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        reported_cost_usd=_decimal((getattr(response, "_hidden_params", None) or {}).get("response_cost")),
        finish_reason=getattr(choice, "finish_reason", None),
        duration_s=duration,
    )
    log.info(
        "llm.completed",
        model=req.model,
        ms=round(duration * 1000, 1),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
    )
    return result


def _logged(error: ModelCallError) -> ModelCallError:
    log.warning(
        "llm.failed",
        model=error.model,
        kind=error.kind,
        retryable=error.retryable,
        retry_after_s=error.retry_after_s,
        message=error.message,
    )
    return error


def input_window(model: str) -> int | None:
    """The model's input window in tokens from litellm's model info; None for a model it does not know."""
    window: object
    try:
        prepare_model(model)
        info = litellm.get_model_info(model)
        window = info.get("max_input_tokens") or info.get("max_tokens")
    except Exception:  # litellm raises a bare Exception for a model it does not know
        window = None
    return window if isinstance(window, int) and window > 0 else None


def count_prompt_tokens(model: str, messages: Sequence[ChatMessage]) -> int:
    """Prompt tokens of ``messages`` for ``model``, for budget reservations before the call.

    Scripted models count the way they report usage. Other models use litellm's tokenizer for the
    model; when it has none, a deliberately generous estimate (3 characters per token), because a
    reservation that is too small lets a budget overshoot.
    """
    if is_scripted(model):
        return scripted_model.estimate_prompt_tokens(model, messages)
    return _counted(model, tuple(messages))


# Exact counts of the last few prompts: a ``generate`` counts its messages once to plan a compaction and
# again to reserve, and a retried call counts the prompt its first attempt counted; tokenizing is most
# of the CPU either costs. Small, because a node's prompt can be as large as the model's window.
@functools.lru_cache(maxsize=32)
def _counted(model: str, messages: tuple[ChatMessage, ...]) -> int:
    try:
        return int(litellm.token_counter(model=model, messages=_as_dicts(messages)))
    except Exception as exc:
        log.warning("llm.token_count_fallback", model=model, error=type(exc).__name__)
        return sum(math.ceil(len(m.content) / 3) + 4 for m in messages) + 3
