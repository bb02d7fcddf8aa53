"""Restarting an ended node (``rlm resume`` of a failed, timed-out, terminated or aborted node).

The node starts again under its workflow id with the input its history began with (through
``start_node``, like every start) and the state the store recorded: its recorded steps are found by key
and not paid again. An RLM node goes on after its last completed iteration (``resume_state``), its
sandbox restores the last REPL snapshot, cells already recorded in the interrupted iteration are
skipped (their children keep their ids), and re-asked sub-calls reach the same child ids, whose
recorded answers come back free.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from decimal import Decimal

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from orchestrator.activities.cell_record import CellRecord
from orchestrator.errors import RlmError
from orchestrator.runs.start import start_node
from orchestrator.store import (
    clear_abort_requests,
    get_run,
    list_steps,
    put_text,
    set_node_status,
    set_run_status,
)
from orchestrator.vocabulary import Status, StepKind
from orchestrator.workflows.types import INLINE_CHARS, LeafInput, NodeInput, NodeResult, NodeState, Text

log = structlog.get_logger(__name__)

NODE_TYPES = ("RLMNode", "Leaf")


class RestartError(RlmError):
    """An ended node cannot be started again as asked; the message says why and what to do."""


async def restart(
    client: Client,
    sessions: sessionmaker[Session],
    desc: WorkflowExecutionDescription,
    deadline_s: float | None = None,
) -> str:
    """Start an ended node again under the same workflow id and input; returns its id."""
    handle = client.get_workflow_handle(desc.id, result_type=NodeResult)
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        if result.status == Status.COMPLETED:
            raise RestartError(f"{desc.id} completed; there is nothing to resume")
    history = await handle.fetch_history()
    started = history.events[0]
    if started.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        raise RestartError(f"the history of {desc.id} does not begin with its start; cannot restart it")
    attrs = started.workflow_execution_started_event_attributes
    kind = attrs.workflow_type.name
    if kind not in NODE_TYPES:
        raise RestartError(f"{desc.id} is a {kind} workflow, not a node; only nodes can be resumed")
    input_type: type[NodeInput] | type[LeafInput] = NodeInput if kind == "RLMNode" else LeafInput
    (inp,) = await client.data_converter.decode(attrs.input.payloads, [input_type])
    run = inp.run
    if deadline_s is not None:
        run = dataclasses.replace(run, deadline_epoch_s=time.time() + deadline_s)
    elif run.deadline_epoch_s <= time.time():
        passed = datetime.fromtimestamp(run.deadline_epoch_s, UTC)
        raise RestartError(
            f"the run's deadline passed at {passed:%Y-%m-%d %H:%M:%S} UTC; "
            "give --deadline SECONDS to let the restarted node run that long"
        )
    inp = dataclasses.replace(inp, run=run)
    with sessions.begin() as session:
        pruned = get_run(session, run.run_id).pruned_at
        if pruned is not None:
            raise RestartError(
                f"run {run.run_id} was pruned at {pruned:%Y-%m-%d %H:%M:%S} UTC (its steps and context are "
                "gone), so its nodes cannot be resumed; start a new run"
            )
        if isinstance(inp, NodeInput):
            inp = dataclasses.replace(inp, carry=resume_state(session, inp.node_id, inp.carry))
        set_node_status(session, inp.node_id, Status.RUNNING)
        # An earlier `rlm abort` of this node, an ancestor or a descendant would stop its new calls.
        clear_abort_requests(session, run.run_id, inp.node_id)
        if inp.parent_id is None:
            set_run_status(session, run.run_id, Status.RUNNING)
    # Restarted under the workflow type and task queue its history started with.
    queue = attrs.task_queue.name
    title = str((await desc.memo()).get("query", ""))
    if not await start_node(client, inp, task_queue=queue, title=title, workflow=kind, again=True):
        raise RestartError(f"{desc.id} is running again already (restarted by someone else); see rlm tree")
    log.info("node.restarted", node_id=desc.id, carry=getattr(inp, "carry", None) is not None)
    return desc.id


def resume_state(session: Session, node_id: str, base: NodeState | None) -> NodeState | None:
    """Where a restarted RLM node goes on: after its last iteration whose cells all finished.

    Every iteration before the last one with a recorded model reply is complete (the node only asks
    for the next reply after the cells of the last one). None: start at iteration 1 (nothing is lost:
    recorded steps are found again)."""
    steps = list_steps(session, node_id)
    generated = [s.iteration for s in steps if s.kind == StepKind.GENERATE]
    if not generated:
        return base
    last = max(generated) - 1
    if last <= (base.iteration if base is not None else 0):
        return base
    cells = sorted(
        (s for s in steps if s.kind == StepKind.CELL and s.iteration <= last),
        key=lambda s: (s.iteration, s.index),
    )
    records = [CellRecord.from_data(s.data) for s in cells]
    children = max((r.children_after for r in records), default=base.children if base is not None else 0)
    cost = sum((s.cost for s in steps if s.kind == StepKind.GENERATE and s.iteration <= last), Decimal(0))
    partial: Text | None = None
    for record in records:
        if record.answer is not None:
            answer = record.answer
            partial = (
                Text(inline=answer) if len(answer) <= INLINE_CHARS else Text(blob=put_text(session, answer))
            )
    return NodeState(
        node_id=node_id,
        iteration=last,
        cells=len(cells),
        children=children,
        cost_usd=str(cost),
        partial=partial,
    )
