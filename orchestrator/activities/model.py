"""``generate`` (a node's next reply) and ``leaf_call`` (one plain completion): the metered model calls.

Each call: rebuild the messages from the store, reserve the worst case and call litellm once
(``num_retries=0``: Temporal retries) through ``activities.metering``, then settle the actual cost and
record the step in one transaction. The
reservation key is the step's key, so a retried attempt reuses the reservation of the attempt that
died instead of holding money twice, and a finished step is found in the store instead of paid again.
A call under a node ``rlm abort`` marked is stopped in flight (``abort_watch``): its hold goes back and
the step returns ``Outcome.ABORTED``.
A ``generate`` whose prompt nears the model's window first records a ``compact`` step the same way
(``orchestrator.activities.compaction``), inside the same activity, so the workflow does not change.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from orchestrator.activities import compaction, texts
from orchestrator.activities.abort_watch import CallAborted
from orchestrator.activities.context import context_info, local_context
from orchestrator.activities.heartbeat import beating
from orchestrator.activities.logctx import expected
from orchestrator.activities.metering import MeteredModel, Prepared, cost_of_result, held
from orchestrator.llm.complete import CompletionResult
from orchestrator.logs import LOCAL_MODEL_CALLS
from orchestrator.protocol.parse import forced_final_answer, parse_reply
from orchestrator.protocol.prompts import NodeLimits, child_query, leaf_messages
from orchestrator.store import (
    find_step,
    finish_node,
    note_attempt,
    record_step,
    settle,
    upsert_node,
    write_step,
)
from orchestrator.store.models import Step
from orchestrator.vocabulary import NodeKind, Outcome, Status, StepKind
from orchestrator.workflows.types import (
    INLINE_CHARS,
    GenerateInput,
    GenerateOutput,
    LeafCallOutput,
    LeafInput,
    NodeInput,
    Text,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Compaction:
    """A compaction to run (reserved) before this iteration's reply."""

    plan: compaction.Plan
    prepared: Prepared


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


class ModelActivities(MeteredModel):
    """The two metered model-call activities: a node's next reply, and one leaf's completion."""

    # --- generate ------------------------------------------------------------------------------

    def _generate_prepare(self, inp: GenerateInput) -> Prepared | _Compaction | Step:
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
            settle(session, held(todo.prepared), cost)
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

    def _generate_record(self, inp: GenerateInput, prep: Prepared, result: CompletionResult) -> Step:
        node = inp.node
        reservation = held(prep)
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
        prep = await self.deps.in_store(self._generate_prepare, inp)
        if isinstance(prep, _Compaction):
            if prep.prepared.reservation is None:
                return GenerateOutput(status=Outcome.BUDGET, message=prep.prepared.refusal)
            summary = await self._call(inp.node.node_id, inp.node.run, inp.node.model, prep.prepared)
            await self.deps.in_store(self._compact_record, inp, prep, summary)
            # Now built with the summary just recorded, which also keeps this iteration from compacting twice.
            prep = await self.deps.in_store(self._generate_prepare, inp)
        if isinstance(prep, Step):
            return await self.deps.in_store(self._generate_output, inp, prep)
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
        step = await self.deps.in_store(self._generate_record, inp, prep, result)
        out = await self.deps.in_store(self._generate_output, inp, step)
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

    def _leaf_prepare(self, inp: LeafInput) -> Prepared | Step:
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

    def _leaf_record(self, inp: LeafInput, prep: Prepared, result: CompletionResult) -> LeafCallOutput:
        reservation = held(prep)
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
        # A local activity: the workflow task that runs it (a Leaf's, or a node's for inline leaves)
        # lasts as long as the call.
        with LOCAL_MODEL_CALLS.held(activity.info().workflow_run_id):
            return await self._leaf_call(inp)

    async def _leaf_call(self, inp: LeafInput) -> LeafCallOutput:
        started = time.monotonic()
        prep = await self.deps.in_store(self._leaf_prepare, inp)
        if isinstance(prep, Step):
            return await self.deps.in_store(self._leaf_output, prep)
        if prep.reservation is None:
            return LeafCallOutput(status=Outcome.BUDGET, message=prep.refusal)
        prepared = time.monotonic()
        try:
            result = await self._call(inp.node_id, inp.run, inp.model, prep)
        except CallAborted as exc:
            return LeafCallOutput(status=Outcome.ABORTED, message=str(exc))
        called = time.monotonic()
        out = await self.deps.in_store(self._leaf_record, inp, prep, result)
        log.debug(
            "leaf.finished",
            node_id=inp.node_id,
            prepare_ms=round((prepared - started) * 1000, 1),
            call_ms=round((called - prepared) * 1000, 1),
            record_ms=round((time.monotonic() - called) * 1000, 1),
        )
        return out
