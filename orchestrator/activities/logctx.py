"""Every activity's log events carry the run id, node id and tenant of the node it works for.

One worker interceptor binds them (``orchestrator.logs.bind_node``) from the activity's input before
the activity runs, so no activity repeats it. Each activity runs in its own asyncio task or thread
with a copied context: the binding ends with the activity.

The same interceptor logs an expected failure (an ``ApplicationError`` made by ``expected``: a model
call refused, an unknown price, the run's deadline) as one ``activity.failed`` event. Temporal's SDK
logs those at debug level only; every other failure it logs as a warning with its traceback.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from orchestrator.logs import bind_node
from orchestrator.workflows.types import NodeEvent, RunSpec

log = structlog.get_logger(__name__)


def expected(
    message: str, *, type: str, non_retryable: bool = True, next_retry_delay: timedelta | None = None
) -> ApplicationError:
    """A failure the engine expects and explains in ``message`` (see the module's docstring)."""
    return ApplicationError(
        message,
        type=type,
        non_retryable=non_retryable,
        next_retry_delay=next_retry_delay,
        category=ApplicationErrorCategory.BENIGN,
    )


def node_of(arg: object) -> tuple[str, str, str] | None:
    """(run id, node id, tenant) of an activity input, or None for an input that names no node."""
    if isinstance(arg, NodeEvent):
        return arg.run_id, arg.node_id, arg.tenant
    node = getattr(arg, "node", arg)  # GenerateInput/ExecuteInput wrap a NodeInput
    run = getattr(node, "run", None)
    node_id = getattr(node, "node_id", None)
    if isinstance(run, RunSpec) and isinstance(node_id, str):
        return run.run_id, node_id, run.tenant
    return None


class _Inbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        ids = node_of(input.args[0]) if input.args else None
        if ids is not None:
            bind_node(*ids)
        structlog.contextvars.bind_contextvars(activity=activity.info().activity_type)
        try:
            return await self.next.execute_activity(input)
        except ApplicationError as exc:
            if exc.category == ApplicationErrorCategory.BENIGN:
                log.warning(
                    "activity.failed",
                    type=exc.type,
                    retryable=not exc.non_retryable,
                    attempt=activity.info().attempt,
                    message=exc.message,
                )
            raise


class LogContext(Interceptor):
    """Worker interceptor: bind run/node/tenant into structlog's context for every activity."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)
