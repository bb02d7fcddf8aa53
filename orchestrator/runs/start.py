"""Starting a run: its inputs stored, its row and root node created, its root workflow started.

Every start path goes through here: ``rlm run`` and ``rlm submit`` (``submit_run``), a schedule's
fire (the ``launch`` activity: ``register_run``) and a restarted node (``start_node``). So a run's
stored config is written in one place (``run_config``) and the root's input is built in one place
(``root_input``), from what the store holds.

Idempotency holds at both layers: the store's ``create_run`` keeps the first run of an id (a second
submission gets the existing run back), and the root workflow id ``<run>/0`` is started with
``REJECT_DUPLICATE``, so Temporal never runs it twice either. A submission that created the run but
died before starting the workflow is completed by the next submission of the same id: the root's
input is rebuilt from the stored run (its deadline, models, limits, blob references, context suffix).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from orchestrator.runs.request import DEFAULT_TENANT, RunError, RunInput, RunRequest, checked, new_run_id
from orchestrator.store import create_run, create_tenant, get_run, get_tenant, put_blob, put_text, upsert_node
from orchestrator.store.errors import AlreadyExists, UnknownTenant
from orchestrator.store.models import Run
from orchestrator.store.sessions import link_run
from orchestrator.vocabulary import FINAL_STATUSES, LeafMode, NodeKind, Status
from orchestrator.workflows.common import memo as query_memo
from orchestrator.workflows.common import search_attributes, task_timeout
from orchestrator.workflows.details import first_line, static_details
from orchestrator.workflows.types import (
    LeafInput,
    Limits,
    NodeInput,
    NodeResult,
    RunSpec,
    Text,
    TurnSpec,
    root_id,
)

if TYPE_CHECKING:
    from orchestrator.workflows import RLMNode

log = structlog.get_logger(__name__)

DEFAULT_TENANT_BUDGET = Decimal("100")


@dataclass(frozen=True)
class RunRecord:
    """Everything a run's root needs, by reference: what ``register_run`` writes to the store."""

    run_id: str
    tenant: str
    query_ref: str
    context_ref: str
    context_suffix: str
    model: str
    sub_model: str
    limits: Limits
    deadline_epoch_s: float
    budget_usd: Decimal | None = None
    schedule: str | None = None
    session: TurnSpec | None = None  # a session's turn


def run_config(rec: RunRecord) -> dict[str, Any]:
    """The run row's ``config``: with the row's references and deadline, all a root's input needs."""
    config: dict[str, Any] = {
        "model": rec.model,
        "sub_model": rec.sub_model,
        "limits": dataclasses.asdict(rec.limits),
        "context_suffix": rec.context_suffix,
    }
    if rec.schedule is not None:
        config["schedule"] = rec.schedule
    if rec.session is not None:
        config["session"] = dataclasses.asdict(rec.session)
    return config


def ensure_tenant(session: Session, tenant: str) -> None:
    """The default tenant is made on first use; any other must exist (``rlm tenant create``)."""
    try:
        get_tenant(session, tenant)
    except UnknownTenant:
        if tenant != DEFAULT_TENANT:
            raise
        # The first runs of a fresh store may race to make it; ON CONFLICT DO NOTHING lets all but one
        # find it made, without failing their transaction.
        with contextlib.suppress(AlreadyExists):
            create_tenant(session, tenant, DEFAULT_TENANT_BUDGET)


def store_inputs(session: Session, inp: RunInput) -> tuple[str, str]:
    """Store the query and the context (after checking the tenant); returns their blob references."""
    ensure_tenant(session, inp.request.tenant)
    return put_text(session, inp.query), put_blob(session, inp.context)


def register_run(session: Session, rec: RunRecord) -> tuple[NodeInput, bool]:
    """Create the run and its root node unless the id exists; returns the root's input and ``created``.

    For an existing run the input is rebuilt from what was stored first (the first submission wins)."""
    ensure_tenant(session, rec.tenant)
    run, created = create_run(
        session,
        rec.run_id,
        tenant=rec.tenant,
        query_ref=rec.query_ref,
        context_ref=rec.context_ref,
        config=run_config(rec),
        deadline=datetime.fromtimestamp(rec.deadline_epoch_s, UTC),
        budget=rec.budget_usd,
        status=Status.RUNNING,
    )
    if created and rec.session is not None:
        link_run(session, rec.run_id, rec.session.session_id)
    if created:
        upsert_node(
            session,
            root_id(rec.run_id),
            run_id=rec.run_id,
            kind=NodeKind.ROOT,
            depth=0,
            status=Status.RUNNING,
        )
    return root_input(run, rec.tenant), created


def root_input(run: Run, tenant: str) -> NodeInput:
    """The root's input as stored: every start of a run's root starts what its first one registered."""
    config = run.config
    if run.context_ref is None or run.query_ref is None or run.deadline is None:
        raise RunError(f"run {run.run_id!r} has no stored query, context or deadline; submit another run id")
    known = {f.name for f in dataclasses.fields(Limits)}
    stored = {k: v for k, v in dict(config.get("limits", {})).items() if k in known}
    if "leaf_mode" in stored:
        stored["leaf_mode"] = LeafMode(stored["leaf_mode"])
    spec = RunSpec(
        run_id=run.run_id,
        tenant=tenant,
        model=str(config["model"]),
        sub_model=str(config["sub_model"]),
        deadline_epoch_s=run.deadline.timestamp(),
        limits=Limits(**stored),
    )
    turn = config.get("session")
    return NodeInput(
        run=spec,
        session=None if turn is None else TurnSpec(**turn),
        node_id=root_id(run.run_id),
        parent_id=None,
        depth=0,
        kind=NodeKind.ROOT,
        model=spec.model,
        context=Text(blob=run.context_ref),
        context_suffix=str(config.get("context_suffix", ".txt")),
        query=Text(blob=run.query_ref),
    )


async def start_node(
    client: Client,
    inp: NodeInput | LeafInput,
    *,
    task_queue: str,
    title: str,
    workflow: str = "RLMNode",
    again: bool = False,
) -> bool:
    """Start a node's workflow under its node id; False when a workflow of that id exists already.

    ``title`` (the query, or its first line) becomes the memo and the Web UI's summary.
    ``again``: a restart, under the id of an ended workflow (a run's first start never reuses an id)."""
    reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE if again else WorkflowIDReusePolicy.REJECT_DUPLICATE
    try:
        await client.start_workflow(
            workflow,
            inp,
            id=inp.node_id,
            task_queue=task_queue,
            id_reuse_policy=reuse,
            search_attributes=search_attributes(inp.run, inp.depth, Status.RUNNING),
            memo=query_memo(title),
            static_summary=first_line(title),
            static_details=static_details(inp),
            task_timeout=task_timeout(inp.run),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


@dataclass(frozen=True)
class Registered:
    root: NodeInput  # as stored first: a run id registered before keeps what it was registered with
    created: bool
    status: str  # the run's status in the store now


def prepare_run(
    sessions: sessionmaker[Session], run: RunRequest | RunInput, *, fresh: bool = False
) -> Registered:
    """Store the run's inputs and register it (its row and root node); nothing is started.

    ``fresh`` refuses a run id that exists (else that run is returned as it was registered)."""
    inp = checked(run)
    req = inp.request
    run_id = req.run_id or new_run_id()
    with sessions.begin() as session:
        query_ref, context_ref = store_inputs(session, inp)
        rec = RunRecord(
            run_id=run_id,
            tenant=req.tenant,
            query_ref=query_ref,
            context_ref=context_ref,
            context_suffix=inp.context_suffix,
            model=req.model,
            sub_model=req.sub_model,
            limits=req.limits,
            deadline_epoch_s=time.time() + req.deadline_s,
            budget_usd=req.budget_usd,
        )
        root, created = register_run(session, rec)
        if fresh and not created:
            raise RunError(
                f"run {run_id!r} already exists; choose another --run-id or inspect it: rlm status {run_id}"
            )
        return Registered(root, created, get_run(session, run_id).status)


@dataclass(frozen=True)
class Submitted:
    run_id: str
    started: bool  # False: the run existed already and was not started again
    status: str


async def submit_run(
    client: Client,
    sessions: sessionmaker[Session],
    run: RunRequest | RunInput,
    task_queue: str,
    *,
    fresh: bool = False,
) -> Submitted:
    """Register the run (``prepare_run``) and start its root once per run id.

    An existing run id reports that run (started again only if its workflow never was); ``fresh``
    refuses it instead, for ``rlm run``, which answers the query it was given."""
    inp = checked(run)
    done = prepare_run(sessions, inp, fresh=fresh)
    run_id = done.root.run.run_id
    if done.status in FINAL_STATUSES:
        log.info("submit.exists", run_id=run_id, status=done.status)
        return Submitted(run_id, False, done.status)
    started = await start_node(client, done.root, task_queue=task_queue, title=inp.query)
    log.info(
        "run.submitted", run_id=run_id, created=done.created, started=started, workflow_id=done.root.node_id
    )
    return Submitted(run_id, started, done.status)


async def start_run(
    client: Client, sessions: sessionmaker[Session], run: RunRequest | RunInput, task_queue: str
) -> WorkflowHandle[RLMNode, NodeResult]:
    """A new run (an existing id is refused), started; returns its root workflow's handle."""
    # The workflow class only types the handle: a submission need not load the workflow definitions.
    from orchestrator.workflows import RLMNode

    done = await submit_run(client, sessions, run, task_queue, fresh=True)
    return client.get_workflow_handle_for(RLMNode.run, root_id(done.run_id))
