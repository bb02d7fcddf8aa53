"""An RLM node's activity calls, each with its timeouts and retries set here, at the call site.

Temporal owns retries: a model call is retried on rate limits and server errors until the run's
deadline; a cell is retried when its sandbox fails to start, while errors in the user's code are
results, not failures. Both heartbeat, so an attempt whose worker died is retried at the heartbeat
timeout. Deterministic code only.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from orchestrator.workflows import common
from orchestrator.workflows.details import first_line
from orchestrator.workflows.types import ExecuteInput, ExecuteOutput, GenerateInput, GenerateOutput, NodeInput

GENERATE_TIMEOUT_S = 600.0
EXECUTE_RETRY = RetryPolicy(maximum_attempts=10)
RELEASE_TIMEOUT_S = 60.0


async def generate(step: GenerateInput) -> GenerateOutput:
    run = step.node.run
    forced = " (forced final answer)" if step.forced_final else ""
    out: GenerateOutput = await workflow.execute_activity(
        common.GENERATE,
        step,
        result_type=GenerateOutput,
        summary=f"iteration {step.iteration}: the model's reply{forced}",
        start_to_close_timeout=common.bounded(run, GENERATE_TIMEOUT_S),
        schedule_to_close_timeout=common.until_deadline(run),
        heartbeat_timeout=common.bounded(run, run.limits.heartbeat_timeout_s),
        retry_policy=common.MODEL_RETRY,
    )
    return out


async def execute(cell: ExecuteInput) -> ExecuteOutput:
    run = cell.node.run
    # Both timeouts end at the deadline: no attempt of the cell runs past it.
    code = first_line(cell.code.inline) if cell.code.inline is not None else "(stored code)"
    out: ExecuteOutput = await workflow.execute_activity(
        common.EXECUTE,
        cell,
        result_type=ExecuteOutput,
        summary=f"cell {cell.iteration}.{cell.index}: {code}",
        start_to_close_timeout=common.until_deadline(run),
        schedule_to_close_timeout=common.until_deadline(run),
        heartbeat_timeout=common.bounded(run, run.limits.heartbeat_timeout_s),
        retry_policy=EXECUTE_RETRY,
    )
    return out


async def release_sandbox(node: NodeInput) -> None:
    """Remove the node's sandbox containers, on whichever worker picks this up."""
    await workflow.execute_activity(
        common.RELEASE_SANDBOX,
        node,
        start_to_close_timeout=timedelta(seconds=RELEASE_TIMEOUT_S),
        retry_policy=common.STORE_RETRY,
    )
