"""Starting and inspecting runs: the store writes before a run starts, the root workflow, summaries.

``temporal_target`` gives the Temporal address to use: ``TEMPORAL_ADDRESS`` when set, else the embedded
dev server (started here, stopped on exit).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from orchestrator.connection import TemporalTarget
from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.ids import check_run_id, check_tenant
from orchestrator.settings import Settings
from orchestrator.store import (
    create_run,
    create_tenant,
    get_run,
    get_tenant,
    get_text,
    list_nodes,
    list_steps,
    put_blob,
    put_text,
    run_usage,
    upsert_node,
)
from orchestrator.store.errors import UnknownTenant
from orchestrator.workflows import RLMNode
from orchestrator.workflows.common import memo, search_attributes
from orchestrator.workflows.types import Limits, NodeInput, NodeResult, RunSpec, Text, root_id

log = structlog.get_logger(__name__)

DEFAULT_TENANT = "default"
DEFAULT_TENANT_BUDGET = Decimal("100")


class RunError(ValueError):
    """A run cannot be started as asked; the message says what to change."""


@contextlib.contextmanager
def temporal_target(settings: Settings, *, ui: bool = True) -> Iterator[TemporalTarget]:
    if settings.temporal_address:
        yield TemporalTarget(settings.temporal_address, settings.temporal_namespace, None)
        return
    config = DevServerConfig(
        data_dir=settings.data_dir / "temporal", namespace=settings.temporal_namespace, ui=ui
    )
    with DevServer(config) as server:
        yield TemporalTarget(server.address, settings.temporal_namespace, server.ui_url)


@dataclass(frozen=True)
class RunRequest:
    query: str
    context_path: Path
    tenant: str = DEFAULT_TENANT
    budget_usd: Decimal | None = None
    model: str = "scripted/search"
    sub_model: str = "scripted/search"
    deadline_s: float = 3600.0
    run_id: str | None = None
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        # Checked where a run is asked for, before anything starts: both end up in visibility queries.
        check_tenant(self.tenant)
        if self.run_id is not None:
            check_run_id(self.run_id)


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def prepare_run(sessions: sessionmaker[Session], req: RunRequest) -> NodeInput:
    """Store the query and context, create the run and its root node; returns the root's input."""
    path = req.context_path
    if not path.is_file():
        raise RunError(f"context {path} is not a readable file; pass --context PATH to a text or .json file")
    if req.deadline_s <= 0:
        raise RunError(f"deadline {req.deadline_s} s must be > 0")
    run_id = req.run_id or new_run_id()
    deadline = time.time() + req.deadline_s
    with sessions.begin() as session:
        ensure_tenant(session, req.tenant)
        context_ref = put_blob(session, path.read_bytes())
        query_ref = put_text(session, req.query)
        _, created = create_run(
            session,
            run_id,
            tenant=req.tenant,
            query_ref=query_ref,
            context_ref=context_ref,
            config={"model": req.model, "sub_model": req.sub_model, "limits": req.limits.__dict__},
            deadline=datetime.fromtimestamp(deadline, UTC),
            budget=req.budget_usd,
            status="running",
        )
        if not created:
            raise RunError(
                f"run {run_id!r} already exists; choose another --run-id or inspect it: rlm status {run_id}"
            )
        upsert_node(session, root_id(run_id), run_id=run_id, kind="root", depth=0, status="running")
    spec = RunSpec(run_id, req.tenant, req.model, req.sub_model, deadline, req.limits)
    suffix = ".json" if path.suffix == ".json" else ".txt"
    return NodeInput(
        spec,
        root_id(run_id),
        None,
        0,
        "root",
        req.model,
        Text(blob=context_ref),
        suffix,
        Text(blob=query_ref),
    )


def ensure_tenant(session: Session, tenant: str) -> None:
    try:
        get_tenant(session, tenant)
    except UnknownTenant:
        if tenant != DEFAULT_TENANT:
            raise
        create_tenant(session, tenant, DEFAULT_TENANT_BUDGET)


async def start_run(
    client: Client, sessions: sessionmaker[Session], req: RunRequest, task_queue: str
) -> WorkflowHandle[RLMNode, NodeResult]:
    root = prepare_run(sessions, req)
    handle = await client.start_workflow(
        RLMNode.run,
        root,
        id=root.node_id,
        task_queue=task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=search_attributes(root.run, 0, "running"),
        memo=memo(req.query),
    )
    log.info("run.started", run_id=root.run.run_id, workflow_id=root.node_id)
    return handle


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
    answer: str | None
    error: str | None
    cost: Decimal
    prompt_tokens: int
    completion_tokens: int
    nodes: int
    wall_s: float | None


def run_summary(sessions: sessionmaker[Session], run_id: str) -> RunSummary:
    with sessions() as session:
        run = get_run(session, run_id)
        nodes = list_nodes(session, run_id)
        root = next((n for n in nodes if n.parent_id is None), None)
        answer = get_text(session, root.answer_ref) if root is not None and root.answer_ref else None
        usage = run_usage(session, run_id)
        wall = (run.finished_at - run.created_at).total_seconds() if run.finished_at else None
        return RunSummary(
            run_id=run_id,
            status=run.status,
            answer=answer,
            error=run.error,
            cost=usage.spent,
            prompt_tokens=sum(n.prompt_tokens for n in nodes),
            completion_tokens=sum(n.completion_tokens for n in nodes),
            nodes=len(nodes),
            wall_s=wall,
        )


@dataclass(frozen=True)
class TreeRow:
    node_id: str
    parent_id: str | None
    depth: int
    kind: str
    status: str
    iterations: int
    cost: Decimal
    answer_preview: str | None
    error: str | None


def run_tree(sessions: sessionmaker[Session], run_id: str, preview_chars: int = 60) -> list[TreeRow]:
    rows: list[TreeRow] = []
    with sessions() as session:
        get_run(session, run_id)
        for node in list_nodes(session, run_id):
            steps = list_steps(session, node.node_id)
            iterations = max((s.iteration for s in steps if s.kind == "generate"), default=0)
            preview = None
            if node.answer_ref:
                text = get_text(session, node.answer_ref)
                preview = text if len(text) <= preview_chars else text[: preview_chars - 1] + "…"
            rows.append(
                TreeRow(
                    node.node_id,
                    node.parent_id,
                    node.depth,
                    node.kind,
                    node.status,
                    iterations,
                    node.cost,
                    preview,
                    node.error,
                )
            )
    return sorted(rows, key=lambda r: tree_key(r.node_id))


def tree_key(node_id: str) -> tuple[int, ...]:
    """Sort ``run/0.10`` after ``run/0.9``: numeric path order."""
    path = node_id.rsplit("/", 1)[-1]
    return tuple(int(p) for p in path.split(".") if p.isdigit())
