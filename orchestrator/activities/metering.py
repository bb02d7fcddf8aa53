"""A metered model call, shared by ``generate`` and ``leaf_call`` (``activities.model``).

Reserve the call's worst case (prompt tokens + max_tokens at the model's price) against the run's and
the tenant's budget under the step's key, call litellm once through the worker's per-model gate and the
abort watch, and give the hold back whenever the call will not be made again under that reservation (a
refusal, an abort, a cancel, a failure no retry will follow). Settling is the caller's, in the
transaction that records its step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.activities.abort_watch import AbortWatch, CallAborted
from orchestrator.activities.cell_watch import deadline_error
from orchestrator.activities.deps import Deps
from orchestrator.activities.logctx import expected
from orchestrator.llm.complete import (
    CompletionRequest,
    CompletionResult,
    ModelCallError,
    ModelGate,
    complete,
    count_prompt_tokens,
    prepare_model,
)
from orchestrator.protocol.prompts import ChatMessage
from orchestrator.store import (
    BudgetExhausted,
    InvalidValue,
    ModelPrice,
    UnknownModelPrice,
    checked_amount,
    cost_of,
    note_attempt,
    price_for,
    release,
    reserve,
)
from orchestrator.workflows.common import MODEL_RETRY, step_timeout_s
from orchestrator.workflows.types import RunSpec

log = structlog.get_logger(__name__)
ModelCaller = Callable[[CompletionRequest], Awaitable[CompletionResult]]
# One model call's own timeout, the same as its step's (``GENERATE_TIMEOUT_S``, ``LEAF_CALL_TIMEOUT_S``).
MODEL_CALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Prepared:
    """A call ready to be made: its messages, and its hold or why the budget refused one."""

    messages: tuple[ChatMessage, ...]
    reservation: str | None  # None: the budget refused
    refusal: str | None
    price: ModelPrice
    compacted: int = 0  # generate: the last iteration the prompt's summary covers (0: none)


def retry_fits(exc: ModelCallError, run: RunSpec) -> bool:
    """Whether Temporal's next attempt of a retryable failure would start before the run's deadline
    (after the provider's retry-after, else ``MODEL_RETRY``'s backoff for this attempt)."""
    policy = MODEL_RETRY
    backoff = policy.initial_interval.total_seconds() * policy.backoff_coefficient ** (
        activity.info().attempt - 1
    )
    if policy.maximum_interval is not None:
        backoff = min(backoff, policy.maximum_interval.total_seconds())
    delay = exc.retry_after_s if exc.retry_after_s else backoff
    return time.time() + delay < run.deadline_epoch_s


def model_error(exc: ModelCallError) -> ApplicationError:
    delay = timedelta(seconds=exc.retry_after_s) if exc.retry_after_s else None
    return expected(
        f"model call failed ({exc.kind}): {exc.message}",
        type=f"ModelCallError.{exc.kind}",
        non_retryable=not exc.retryable,
        next_retry_delay=delay,
    )


class MeteredModel:
    """What ``generate`` and ``leaf_call`` share: the price, the reservation, the gated and abortable
    call, the hold given back when the call will not be made again."""

    def __init__(
        self,
        deps: Deps,
        gate: ModelGate | None = None,
        aborts: AbortWatch | None = None,
        calls: ModelCaller = complete,
    ) -> None:
        self.deps = deps
        self.gate = gate or ModelGate(deps.settings.model_concurrency)
        self.aborts = aborts or AbortWatch(deps.sessions)
        self.calls = calls  # complete() here, or a ModelCallProcess's

    def _reserve(
        self, session: Session, run: RunSpec, model: str, messages: tuple[ChatMessage, ...], key: str
    ) -> Prepared:
        """Reserve the call's worst case inside ``session``'s transaction (the ledger uses a savepoint)."""
        price = self._priced(session, model)
        worst = cost_of(price, count_prompt_tokens(model, messages), run.limits.max_tokens)
        try:
            checked_amount(worst)
        except InvalidValue as exc:
            # No retry can make it fit: the price or --max-tokens is out of all proportion.
            raise expected(
                f"the call's worst case cannot be reserved: {exc}; check the model's price "
                f"(`rlm price show {model}`) and the run's --max-tokens ({run.limits.max_tokens})",
                type="ReservationTooLarge",
            ) from exc
        try:
            # A closed reservation of this step's key was an attempt (or, restarted, a run of the node)
            # whose call ended without a recorded answer: this call reserves anew.
            rid = reserve(session, run_id=run.run_id, tenant=run.tenant, amount=worst, key=key, renew=True)
        except BudgetExhausted as exc:
            log.info("budget.refused", run_id=run.run_id, key=key, message=str(exc))
            return Prepared(messages, None, str(exc), price)
        return Prepared(messages, rid, None, price)

    def _priced(self, session: Session, model: str, role: str = "") -> ModelPrice:
        """``model``'s price; a model that cannot be called or priced fails the step for good."""
        try:
            prepare_model(model)
        except ModelCallError as exc:
            # Unmapped, it would reach Temporal as a plain (retryable) exception: retried to the deadline.
            raise model_error(exc) from exc
        try:
            return price_for(session, model, prices_file=self.deps.settings.prices_file)
        except UnknownModelPrice as exc:
            raise expected(f"{role}{exc}", type="UnknownModelPrice") from exc

    async def _call(self, node_id: str, run: RunSpec, model: str, prep: Prepared) -> CompletionResult:
        if time.time() >= run.deadline_epoch_s:
            await self._release(prep)
            raise deadline_error("before the model call started")
        try:
            return await self.aborts.call(run.run_id, node_id, self._gated(run, model, prep))
        except CallAborted:
            # Stopped by `rlm abort` before it returned: nothing is charged, the hold goes back.
            await asyncio.shield(self._release(prep))
            raise
        except ModelCallError as exc:
            # A retry that could only start after the run's deadline is not made: the node ends
            # timed_out now, instead of Temporal trying again past it.
            too_late = exc.retryable and not retry_fits(exc, run)
            if too_late or not exc.retryable:
                await self._release(prep)
            else:
                await self.deps.in_store(self._note_attempt, node_id, f"{exc.kind}: {exc.message}")
            if too_late:
                raise deadline_error(f"before the model call could be retried ({exc.kind})") from exc
            raise model_error(exc) from exc
        except asyncio.CancelledError:
            # Abandoned (a cancel in Temporal, the deadline): no answer will be used, so nothing is
            # charged and the held amount goes back to the budgets instead of staying reserved for good.
            log.info("model_call.cancelled", node_id=node_id, model=model)
            await asyncio.shield(self._release(prep))
            raise

    async def _gated(self, run: RunSpec, model: str, prep: Prepared) -> CompletionResult:
        async with self.gate.slot(model):
            req = CompletionRequest(
                model=model,
                messages=prep.messages,
                max_tokens=run.limits.max_tokens,
                timeout_s=step_timeout_s(run.deadline_epoch_s - time.time(), MODEL_CALL_TIMEOUT_S),
            )
            return await self.calls(req)

    async def _release(self, prep: Prepared) -> None:
        """The call will not be made again under this reservation: its hold goes back to the budgets."""
        if prep.reservation is not None:
            await self.deps.in_store(release, self.deps.sessions, prep.reservation)

    def _note_attempt(self, node_id: str, error: str) -> None:
        with self.deps.sessions.begin() as session:
            note_attempt(session, node_id, activity.info().attempt, error[:1000])


def held(prep: Prepared) -> str:
    if prep.reservation is None:
        raise RuntimeError("a model call was made without a reservation")
    return prep.reservation


def cost_of_result(prep: Prepared, result: CompletionResult) -> Decimal:
    return cost_of(prep.price, result.prompt_tokens, result.completion_tokens)
