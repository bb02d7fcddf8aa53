"""Pieces both workflows use: search attributes, deadline arithmetic, activity names, retry policies.

Deterministic code only. Activities are named by string so that workflow modules never import the
activity modules (litellm, the store, the sandbox).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

from orchestrator.vocabulary import Status
from orchestrator.workflows.details import first_line
from orchestrator.workflows.types import NodeEvent, NodeState, RunSpec

SA_RUN_ID = SearchAttributeKey.for_keyword("RlmRunId")
SA_TENANT = SearchAttributeKey.for_keyword("RlmTenant")
SA_STATUS = SearchAttributeKey.for_keyword("RlmStatus")
SA_DEPTH = SearchAttributeKey.for_int("RlmDepth")
SA_COST = SearchAttributeKey.for_float("RlmCost")

GENERATE = "generate"
EXECUTE = "execute"
LEAF_CALL = "leaf_call"
RECORD_NODE = "record_node"
RELEASE_SANDBOX = "release_sandbox"
# The ApplicationError type of a step that stopped because the run's deadline passed (ends the node
# ``timed_out``, like an activity timeout).
DEADLINE_PASSED = "DeadlinePassed"
# Memo values stay short: the UI shows them with the workflow.
MEMO_CHARS = 200

# Model calls: rate limits, 5xx, timeouts and connection errors come back as retryable failures (with
# the provider's retry-after as the next delay); the deadline bounds the whole thing.
MODEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=60)
)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
)
RECORD_TIMEOUT = timedelta(seconds=30)


def search_attributes(run: RunSpec, depth: int, status: Status) -> TypedSearchAttributes:
    return TypedSearchAttributes(
        [
            SearchAttributePair(SA_RUN_ID, run.run_id),
            SearchAttributePair(SA_TENANT, run.tenant),
            SearchAttributePair(SA_STATUS, status),
            SearchAttributePair(SA_DEPTH, depth),
            SearchAttributePair(SA_COST, 0.0),
        ]
    )


# The shortest timeout a step gets: Temporal reads a zero timeout as none at all. Any longer floor lets a
# step that starts just before the run's deadline run on past it by up to the floor.
SHORTEST_TIMEOUT_S = 0.1


def step_timeout_s(left_s: float, cap_s: float = float("inf")) -> float:
    """A step's timeout: the smaller of ``cap_s`` and the ``left_s`` seconds before the run's deadline,
    at least ``SHORTEST_TIMEOUT_S``."""
    return max(SHORTEST_TIMEOUT_S, min(cap_s, left_s))


def seconds_left(run: RunSpec) -> float:
    return run.deadline_epoch_s - workflow.now().timestamp()


def bounded(run: RunSpec, seconds: float) -> timedelta:
    """The smaller of ``seconds`` and the time left before the run's deadline (see ``step_timeout_s``)."""
    return timedelta(seconds=step_timeout_s(seconds_left(run), seconds))


def until_deadline(run: RunSpec) -> timedelta:
    return timedelta(seconds=step_timeout_s(seconds_left(run)))


# A leaf's call, and a node's inline leaves, run as local activities inside a workflow task, which the
# SDK keeps alive by completing it empty at 0.8 of its timeout. At Temporal's default of 10 s that left a
# busy worker 2 s for each such beat: in a 220-leaf fan-out on two slow cores a few beats came late, the
# task timed out and its calls ran again (a provider may bill the dropped first request too). Nodes and
# leaves get the run's heartbeat timeout instead, the time every other step has to show that its worker
# lives, within the bounds Temporal allows a workflow task.
SHORTEST_TASK_TIMEOUT_S = 10.0
LONGEST_TASK_TIMEOUT_S = 120.0


def task_timeout(run: RunSpec) -> timedelta:
    """The workflow task timeout an ``RLMNode`` or ``Leaf`` is started with."""
    seconds = min(max(run.limits.heartbeat_timeout_s, SHORTEST_TASK_TIMEOUT_S), LONGEST_TASK_TIMEOUT_S)
    return timedelta(seconds=seconds)


async def record(event: NodeEvent) -> None:
    await workflow.execute_local_activity(
        RECORD_NODE, event, start_to_close_timeout=RECORD_TIMEOUT, retry_policy=STORE_RETRY
    )


def set_status(status: Status, cost: Decimal | None = None) -> None:
    """The node's ``RlmStatus`` (and ``RlmCost``, when given) search attributes."""
    if cost is None:
        workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
    else:
        workflow.upsert_search_attributes([SA_STATUS.value_set(status), SA_COST.value_set(float(cost))])


def total_cost(state: NodeState) -> Decimal:
    """A node's own spend and its finished children's: a parent's RlmCost adds up its whole subtree."""
    return Decimal(state.cost_usd) + Decimal(state.children_cost_usd)


def memo(query: str) -> dict[str, str]:
    """A node's memo: the first line of its query (or prompt), shortened; also its Web UI summary."""
    return {"query": first_line(query, MEMO_CHARS)}
