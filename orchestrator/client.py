"""Starting and inspecting runs: the store writes before a run starts, the root workflow, summaries.

``temporal_target`` gives the Temporal address to use: ``TEMPORAL_ADDRESS`` when set, else the server of
the ``rlm dev`` serving the data directory, else an embedded dev server (started here, stopped on exit);
``shared_target`` the same for commands that need a server outliving them (none is started).
``checked_input`` is the one check of a run's query, deadline and context before anything is stored.
"""

from __future__ import annotations

import contextlib
import json
import sys
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

from orchestrator.connection import TemporalTarget, cluster_target
from orchestrator.devlock import DataDirBusy, Holder, probe
from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.errors import RlmError
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


class RunError(RlmError):
    """A run cannot be started as asked; the message says what to change."""


@contextlib.contextmanager
def temporal_target(settings: Settings, *, ui: bool = True, shared: bool = False) -> Iterator[TemporalTarget]:
    """``TEMPORAL_ADDRESS``; else the server of the ``rlm dev`` serving the data directory; else an
    embedded dev server, stopped on exit (``shared``: `rlm dev`'s own, which never uses another's).

    ``DataDirBusy`` when another process serves the data directory with a server it does not share."""
    if settings.temporal_address:
        yield cluster_target(settings)
        return
    config = DevServerConfig(
        data_dir=settings.data_dir / "temporal", namespace=settings.temporal_namespace, ui=ui, shared=shared
    )
    server = DevServer(config)
    holder: Holder | None = None
    try:
        server.start()
    except DataDirBusy as busy:
        if shared or busy.holder is None or not busy.holder.shared:
            raise
        holder = busy.holder
    if holder is not None:
        yield _dev_target(settings, holder)
        return
    try:
        yield TemporalTarget(server.address, settings.temporal_namespace, server.ui_url)
    finally:
        server.stop()


def shared_target(settings: Settings) -> TemporalTarget | None:
    """``TEMPORAL_ADDRESS``, else the server of the ``rlm dev`` serving the data directory, else None."""
    if settings.temporal_address:
        return cluster_target(settings)
    holder = dev_holder(settings)
    return None if holder is None else _dev_target(settings, holder)


def dev_holder(settings: Settings) -> Holder | None:
    """The ``rlm dev`` serving the data directory, if one runs (waiting for one that is starting)."""
    holder = probe(settings.data_dir / "temporal", DevServerConfig.start_timeout_s)
    return holder if holder is not None and holder.shared else None


def _dev_target(settings: Settings, holder: Holder) -> TemporalTarget:
    print(f"using the rlm dev server at {holder.address} (data dir {settings.data_dir})", file=sys.stderr)
    return TemporalTarget(holder.address, settings.temporal_namespace, holder.ui_url)


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


# The one cap of a run's --deadline; past a year, a scheduled job is the better tool.
MAX_DEADLINE_S = 365 * 24 * 3600.0
CONTEXT_KINDS = "a UTF-8 text file or a .json file"


@dataclass(frozen=True)
class RunInput:
    """A run's query and context after ``checked_input``: what every start path stores."""

    query: str
    context: bytes
    context_suffix: str  # ".json" (the sandbox parses it) or ".txt"


def checked_input(req: RunRequest) -> RunInput:
    """The one check of a run's query, deadline and context file for every path that starts runs
    (``rlm run``, ``rlm submit``, ``rlm schedule create``), done before anything is stored."""
    if not req.query.strip():
        raise RunError("the query is empty; give the question to answer over the context")
    if not 0 < req.deadline_s <= MAX_DEADLINE_S:  # also refuses nan
        raise RunError(
            f"--deadline {req.deadline_s:g} is out of range; give the seconds the whole tree may take, "
            f"more than 0 and at most {MAX_DEADLINE_S:.0f} (one year)"
        )
    data, suffix = _context(req.context_path)
    return RunInput(req.query, data, suffix)


def _context(path: Path) -> tuple[bytes, str]:
    bad = f"pass --context PATH to {CONTEXT_KINDS}"
    if not path.is_file():
        raise RunError(f"context {path} is not a readable file; {bad}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunError(f"context {path} cannot be read ({exc.strerror}); {bad}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise RunError(f"context {path} is a binary file (a NUL byte at offset {nul}); {bad}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunError(
            f"context {path} is not UTF-8 text (byte offset {exc.start}); {bad} "
            "(convert other encodings with iconv -t UTF-8)"
        ) from None
    if not text.strip():
        raise RunError(f"context {path} is empty; {bad} holding what the query is about")
    suffix = ".json" if path.suffix == ".json" else ".txt"
    if suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunError(
                f"context {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                "fix it, or give the file another suffix than .json to pass it as text"
            ) from None
    return data, suffix


def prepare_run(sessions: sessionmaker[Session], req: RunRequest) -> NodeInput:
    """Store the query and context, create the run and its root node; returns the root's input."""
    inp = checked_input(req)
    run_id = req.run_id or new_run_id()
    deadline = time.time() + req.deadline_s
    with sessions.begin() as session:
        ensure_tenant(session, req.tenant)
        context_ref = put_blob(session, inp.context)
        query_ref = put_text(session, inp.query)
        config = {
            "model": req.model,
            "sub_model": req.sub_model,
            "limits": req.limits.__dict__,
            "context_suffix": inp.context_suffix,
        }
        _, created = create_run(
            session,
            run_id,
            tenant=req.tenant,
            query_ref=query_ref,
            context_ref=context_ref,
            config=config,
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
    return NodeInput(
        spec,
        root_id(run_id),
        None,
        0,
        "root",
        req.model,
        Text(blob=context_ref),
        inp.context_suffix,
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
