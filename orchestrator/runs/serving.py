"""Whether a live worker of this store already serves the task queue, so ``rlm run`` need not start one.

Two independent facts must agree, because either alone can be stale: the store's worker leases say
which workers of this store are alive (a lease is dropped at a clean stop and expires a heartbeat
timeout after a crash), and Temporal's task queue description says which identities polled this queue
recently (it keeps pollers listed for minutes after they stop). A worker's Temporal identity is its
lease's worker id, so a worker that both holds a live lease and polls the queue for workflow and
activity tasks is alive, uses this store and serves this server's queue.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from orchestrator.store import live_workers


async def _pollers(client: Client, task_queue: str, kind: TaskQueueType.ValueType) -> set[str]:
    request = DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
    )
    described = await client.workflow_service.describe_task_queue(request)
    return {poller.identity for poller in described.pollers}


async def serving_worker(client: Client, sessions: sessionmaker[Session], task_queue: str) -> str | None:
    """The id of a live worker of this store that polls ``task_queue`` for both kinds of task, if any."""
    with sessions() as session:
        alive = live_workers(session)
    if not alive:
        return None
    polling = alive & await _pollers(client, task_queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)
    if polling:
        polling &= await _pollers(client, task_queue, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)
    return min(polling) if polling else None
