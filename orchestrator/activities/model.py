"""``generate`` (a node's next reply) and ``leaf_call`` (one plain completion): the metered model calls.

Each call: rebuild the messages from the store, reserve the worst case (prompt tokens + max_tokens at
the model's price) against the run's and the tenant's budget, call litellm once (``num_retries=0``:
Temporal retries), then settle the actual cost and record the step in one transaction. The
reservation key is the step's key, so a retried attempt reuses the reservation of the attempt that
died instead of holding money twice, and a finished step is found in the store instead of paid again.
A call under a node ``rlm abort`` marked is stopped in flight (``abort_watch``): its hold goes back and
the step returns ``Outcome.ABORTED``.
A ``generate`` whose prompt nears the model's window first records a ``compact`` step the same way
(``orchestrator.activities.compaction``), inside the same activity, so the workflow does not change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.activities import compaction, texts
from orchestrator.activities.abort_watch import AbortWatch, CallAborted
from orchestrator.activities.cell_watch import deadline_error
from orchestrator.activities.context import context_info, local_context
from orchestrator.activities.deps import Deps
from orchestrator.activities.heartbeat import beating
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
from orchestrator.protocol.parse import forced_final_answer, parse_reply
from orchestrator.protocol.prompts import ChatMessage, NodeLimits, child_query, leaf_messages
from orchestrator.store import (
    BudgetExhausted,
    InvalidValue,
    ModelPrice,
    UnknownModelPrice,
    checked_amount,
    cost_of,
    find_step,
    finish_node,
    note_attempt,
    price_for,
    record_step,
    release,
    reserve,
    settle,
    upsert_node,
    write_step,
)
from orchestrator.store.models import Step
from orchestrator.vocabulary import NodeKind, Outcome, Status, StepKind
from orchestrator.workflows.common import MODEL_RETRY, step_timeout_s
from orchestrator.workflows.types import (
    INLINE_CHARS,
    GenerateInput,
    GenerateOutput,
    LeafCallOutput,
    LeafInput,
    NodeInput,
    RunSpec,
    Text,
)

log = structlog.get_logger(__name__)
# One model call's own timeout, the same as its step's (``GENERATE_TIMEOUT_S``, ``LEAF_CALL_TIMEOUT_S``).
MODEL_CALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class _Prepared:
    messages: tuple[ChatMessage, ...]
    reservation: str | None  # None: the budget refused
    refusal: str | None
    price: ModelPrice
    compacted: int = 0  # generate: the last iteration the prompt's summary covers (0: none)


@dataclass(frozen=True)
class _Compaction:
    """A compaction to run (reserved) before this iteration's reply."""

    plan: compaction.Plan
    prepared: _Prepared


def node_limits(node: NodeInput) -> NodeLimits:
    lim = node.run.limits
    return NodeLimits(
        depth=node.depth,
        max_depth=lim.max_depth,
        max_iterations=lim.max_iterations,
        max_subcalls=lim.max_subcalls,
        max_concurrency=lim.max_concurrency,
        output_chars=lim.output_chars,
    )


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


class ModelActivities:
    def __init__(self, deps: Deps, gate: ModelGate | None = None, aborts: AbortWatch | None = None) -> None:
        self.deps = deps
        self.gate = gate or ModelGate(deps.settings.model_concurrency)
        self.aborts = aborts or AbortWatch(deps.sessions)

    # --- shared metering -----------------------------------------------------------------------

    def _reserve(
        self, session: Session, run: RunSpec, model: str, messages: tuple[ChatMessage, ...], key: str
    ) -> _Prepared:
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
            return _Prepared(messages, None, str(exc), price)
        return _Prepared(messages, rid, None, price)

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

    async def _call(self, node_id: str, run: RunSpec, model: str, prep: _Prepared) -> CompletionResult:
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
                await asyncio.to_thread(self._note_attempt, node_id, f"{exc.kind}: {exc.message}")
            if too_late:
                raise deadline_error(f"before the model call could be retried ({exc.kind})") from exc
            raise model_error(exc) from exc
        except asyncio.CancelledError:
            # Abandoned (a cancel in Temporal, the deadline): no answer will be used, so nothing is
            # charged and the held amount goes back to the budgets instead of staying reserved for good.
            log.info("model_call.cancelled", node_id=node_id, model=model)
            await asyncio.shield(self._release(prep))
            raise

    async def _gated(self, run: RunSpec, model: str, prep: _Prepared) -> CompletionResult:
        async with self.gate.slot(model):
            req = CompletionRequest(
                model=model,
                messages=prep.messages,
                max_tokens=run.limits.max_tokens,
                timeout_s=step_timeout_s(run.deadline_epoch_s - time.time(), MODEL_CALL_TIMEOUT_S),
            )
            return await complete(req)

    async def _release(self, prep: _Prepared) -> None:
        """The call will not be made again under this reservation: its hold goes back to the budgets."""
        if prep.reservation is not None:
            await asyncio.to_thread(release, self.deps.sessions, prep.reservation)

    def _note_attempt(self, node_id: str, error: str) -> None:
        with self.deps.sessions.begin() as session:
            note_attempt(session, node_id, activity.info().attempt, error[:1000])

    # --- generate ------------------------------------------------------------------------------

    def _generate_prepare(self, inp: GenerateInput) -> _Prepared | _Compaction | Step:
        node = inp.node
        with self.deps.sessions.begin() as session:
            done = find_step(session, node.node_id, inp.iteration, StepKind.GENERATE, 0)
            if done is not None:
                return done
            if node.depth == 0 and inp.iteration == 1 and node.run.sub_model != node.model:
                # Left to the first sub-call, a sub-model without a price would fail the run only after
                # the root's model calls were paid for.
                self._priced(session, node.run.sub_model, role="the run's sub-model: ")
            path = local_context(session, node, self.deps.context_dir)
            info = context_info(path)
            if node.query is not None:
                query = texts.unpack(session, node.query)
            else:
                query = child_query(path.read_text(encoding="utf-8", errors="replace"))
            limits = node_limits(node)
            past = compaction.history(session, node.node_id, inp.iteration)
            messages = compaction.messages_of(limits, query, info, past, forced_final=inp.forced_final)
            todo = compaction.plan(node.model, node.run.limits, limits, query, info, past, messages)
            if todo is not None:
                key = f"{node.node_id}/{inp.iteration}/{StepKind.COMPACT}"
                return _Compaction(todo, self._reserve(session, node.run, node.model, todo.request, key))
            key = f"{node.node_id}/{inp.iteration}/{StepKind.GENERATE}"
            prep = self._reserve(session, node.run, node.model, messages, key)
            return dataclasses.replace(prep, compacted=past.summary.last if past.summary else 0)

    def _compact_record(self, inp: GenerateInput, todo: _Compaction, result: CompletionResult) -> None:
        node = inp.node
        cost = cost_of_result(todo.prepared, result)
        with self.deps.sessions.begin() as session:
            settle(session, _held(todo.prepared), cost)
            write_step(
                session,
                node.node_id,
                inp.iteration,
                StepKind.COMPACT,
                0,
                output_ref=texts.blob_ref(session, Text(inline=result.text)),
                summary=result.text[:200],
                model=node.model,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost=cost,
                duration_ms=round(result.duration_s * 1000),
                data={"first": 1, "last": todo.plan.last, "prompt_tokens_before": todo.plan.prompt_tokens},
            )
        log.info(
            "generate.compacted",
            node_id=node.node_id,
            iteration=inp.iteration,
            covers=f"1..{todo.plan.last}",
            prompt_tokens_before=todo.plan.prompt_tokens,
            cost=str(cost),
        )

    def _generate_record(self, inp: GenerateInput, prep: _Prepared, result: CompletionResult) -> Step:
        node = inp.node
        reservation = _held(prep)
        cost = cost_of_result(prep, result)
        with self.deps.sessions.begin() as session:
            settle(session, reservation, cost)
            if activity.info().attempt > 1:
                note_attempt(session, node.node_id, 0, None)
            return record_step(
                session,
                node.node_id,
                inp.iteration,
                StepKind.GENERATE,
                0,
                # An rlm_query child's prompt (its context) lives only in its workflow's input otherwise.
                input_ref=texts.blob_ref(session, node.context) if node.kind == NodeKind.RLM else None,
                output_ref=texts.blob_ref(session, Text(inline=result.text)),
                summary=result.text[:200],
                model=node.model,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost=cost,
                duration_ms=round(result.duration_s * 1000),
                data={"forced_final": inp.forced_final},
            )

    def _generate_output(self, inp: GenerateInput, step: Step) -> GenerateOutput:
        with self.deps.sessions() as session:
            # This iteration's compaction is part of what producing its reply cost.
            compacted = find_step(session, step.node_id, step.iteration, StepKind.COMPACT, 0)
            cost = str(step.cost + (compacted.cost if compacted is not None else 0))
            reply = texts.unpack(session, Text(blob=step.output_ref)) if step.output_ref else ""
            if inp.forced_final:
                answer = forced_final_answer(reply) or reply.strip()
                return GenerateOutput(status=Outcome.OK, final=texts.pack(session, answer), cost_usd=cost)
            parsed = parse_reply(reply)
            blocks = [texts.pack(session, block.code) for block in parsed.blocks]
            final = None
            if not blocks and parsed.final_text is not None:
                final = texts.pack(session, parsed.final_text)
            session.commit()
        return GenerateOutput(status=Outcome.OK, blocks=blocks, final=final, cost_usd=cost)

    @activity.defn(name="generate")
    async def generate(self, inp: GenerateInput) -> GenerateOutput:
        try:
            async with beating():
                return await self._generate(inp)
        except CallAborted as exc:
            return GenerateOutput(status=Outcome.ABORTED, message=str(exc))

    async def _generate(self, inp: GenerateInput) -> GenerateOutput:
        started = time.monotonic()
        prep = await asyncio.to_thread(self._generate_prepare, inp)
        if isinstance(prep, _Compaction):
            if prep.prepared.reservation is None:
                return GenerateOutput(status=Outcome.BUDGET, message=prep.prepared.refusal)
            summary = await self._call(inp.node.node_id, inp.node.run, inp.node.model, prep.prepared)
            await asyncio.to_thread(self._compact_record, inp, prep, summary)
            # Now built with the summary just recorded, which also keeps this iteration from compacting twice.
            prep = await asyncio.to_thread(self._generate_prepare, inp)
        if isinstance(prep, Step):
            return await asyncio.to_thread(self._generate_output, inp, prep)
        if isinstance(prep, _Compaction):
            raise RuntimeError("a compaction was planned twice for one iteration")
        if prep.reservation is None:
            return GenerateOutput(status=Outcome.BUDGET, message=prep.refusal)
        try:
            result = await self._call(inp.node.node_id, inp.node.run, inp.node.model, prep)
        except ApplicationError as exc:
            if prep.compacted and exc.type == "ModelCallError.context_window":
                raise expected(
                    f"{exc.message} (even after compacting iterations 1..{prep.compacted} into a summary; "
                    "give the node a model with a larger context window or lower output_chars)",
                    type=exc.type,
                ) from exc
            raise
        step = await asyncio.to_thread(self._generate_record, inp, prep, result)
        out = await asyncio.to_thread(self._generate_output, inp, step)
        log.info(
            "generate.finished",
            node_id=inp.node.node_id,
            iteration=inp.iteration,
            blocks=len(out.blocks),
            cost=out.cost_usd,
            ms=round((time.monotonic() - started) * 1000),
        )
        return out

    # --- leaf ----------------------------------------------------------------------------------

    def _leaf_prepare(self, inp: LeafInput) -> _Prepared | Step:
        with self.deps.sessions.begin() as session:
            created = upsert_node(
                session,
                inp.node_id,
                run_id=inp.run.run_id,
                kind=NodeKind.LEAF,
                depth=inp.depth,
                parent_id=inp.parent_id,
                status=Status.RUNNING,
            )
            done = None if created else find_step(session, inp.node_id, 0, StepKind.LEAF, 0)
            if done is not None:
                # A re-run of a call that finished (its worker died before Temporal heard of it).
                finish_node(session, inp.node_id, status=Status.COMPLETED, answer_ref=done.output_ref)
                return done
            prompt = texts.unpack(session, inp.prompt)
            key = f"{inp.node_id}/{StepKind.LEAF}"
            return self._reserve(session, inp.run, inp.model, leaf_messages(prompt), key)

    def _leaf_record(self, inp: LeafInput, prep: _Prepared, result: CompletionResult) -> LeafCallOutput:
        reservation = _held(prep)
        cost = cost_of_result(prep, result)
        with self.deps.sessions.begin() as session:
            settle(session, reservation, cost)
            answer_ref = texts.blob_ref(session, Text(inline=result.text))
            write_step(
                session,
                inp.node_id,
                0,
                StepKind.LEAF,
                0,
                input_ref=texts.blob_ref(session, inp.prompt),
                output_ref=answer_ref,
                summary=result.text[:200],
                model=inp.model,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                cost=cost,
                duration_ms=round(result.duration_s * 1000),
            )
            finish_node(session, inp.node_id, status=Status.COMPLETED, answer_ref=answer_ref)
        # The answer's blob was just stored: a long answer is not hashed, compressed and put again.
        answer = Text(inline=result.text) if len(result.text) <= INLINE_CHARS else Text(blob=answer_ref)
        return LeafCallOutput(status=Outcome.OK, answer=answer, cost_usd=str(cost))

    def _leaf_output(self, step: Step) -> LeafCallOutput:
        with self.deps.sessions() as session:
            text = texts.unpack(session, Text(blob=step.output_ref)) if step.output_ref else ""
            out = LeafCallOutput(status=Outcome.OK, answer=texts.pack(session, text), cost_usd=str(step.cost))
            session.commit()
            return out

    @activity.defn(name="leaf_call")
    async def leaf_call(self, inp: LeafInput) -> LeafCallOutput:
        started = time.monotonic()
        prep = await asyncio.to_thread(self._leaf_prepare, inp)
        if isinstance(prep, Step):
            return await asyncio.to_thread(self._leaf_output, prep)
        if prep.reservation is None:
            return LeafCallOutput(status=Outcome.BUDGET, message=prep.refusal)
        prepared = time.monotonic()
        try:
            result = await self._call(inp.node_id, inp.run, inp.model, prep)
        except CallAborted as exc:
            return LeafCallOutput(status=Outcome.ABORTED, message=str(exc))
        called = time.monotonic()
        out = await asyncio.to_thread(self._leaf_record, inp, prep, result)
        log.debug(
            "leaf.finished",
            node_id=inp.node_id,
            prepare_ms=round((prepared - started) * 1000, 1),
            call_ms=round((called - prepared) * 1000, 1),
            record_ms=round((time.monotonic() - called) * 1000, 1),
        )
        return out


def _held(prep: _Prepared) -> str:
    if prep.reservation is None:
        raise RuntimeError("a model call was made without a reservation")
    return prep.reservation


def cost_of_result(prep: _Prepared, result: CompletionResult) -> Decimal:
    return cost_of(prep.price, result.prompt_tokens, result.completion_tokens)
