"""Temporal Schedules that start runs, and ``rlm temporal setup`` (the custom search attributes).

A schedule's action starts the ``RlmLauncher`` workflow (``orchestrator/workflows/launcher.py``) with a
``LaunchInput``. The query and the context are stored in the blob store when the schedule is created,
so every fire answers the same query over the same context and no file has to be readable by the
workers at fire time; to change them, delete the schedule and create it again. Each fire's run id is
the launcher's workflow id, ``<name>-<fire time>`` (the Schedule appends the time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from orchestrator.devstack import SEARCH_ATTRIBUTES
from orchestrator.errors import RlmError
from orchestrator.runs import RunInput, RunRequest, checked, store_inputs
from orchestrator.store import UnknownModelPrice, price_for
from orchestrator.workflows.launcher import Launcher, LaunchInput
from orchestrator.workflows.types import Text

log = structlog.get_logger(__name__)

# A fire's run id is "<name>-<fire time>": this rule keeps it within orchestrator.ids' run-id rule.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
OVERLAP = {
    "skip": ScheduleOverlapPolicy.SKIP,
    "buffer-one": ScheduleOverlapPolicy.BUFFER_ONE,
    "allow": ScheduleOverlapPolicy.ALLOW_ALL,
}


class ScheduleError(RlmError):
    """A schedule operation cannot be done as asked; the message says what to change."""


class SearchAttributeConflict(RlmError):
    """A custom search attribute exists with another type; Temporal cannot change it in place."""


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ScheduleError(
            f"schedule name {name!r} must be 1-80 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return name


@dataclass(frozen=True)
class ScheduleRequest:
    name: str
    cron: str
    run: RunRequest | RunInput
    overlap: str = "skip"
    paused: bool = False
    note: str | None = None


def launch_input(sessions: sessionmaker[Session], name: str, inp: RunInput) -> LaunchInput:
    """Store the query and context now; the schedule's action carries only their references (each
    fire's ``launch`` activity registers its run from them: ``orchestrator.runs.register_run``)."""
    req = inp.request
    with sessions.begin() as session:
        query_ref, context_ref = store_inputs(session, inp)
    return LaunchInput(
        schedule=name,
        tenant=req.tenant,
        query=Text(blob=query_ref),
        context=Text(blob=context_ref),
        context_suffix=inp.context_suffix,
        model=req.model,
        sub_model=req.sub_model,
        deadline_s=req.deadline_s,
        budget_usd=None if req.budget_usd is None else str(req.budget_usd),
        limits=req.limits,
    )


def check_priced(sessions: sessionmaker[Session], run: RunRequest, prices_file: Path | None) -> None:
    """Refuse a schedule whose models have no price: each of its fires would start a run that fails at
    its first step. (``rlm run`` and ``rlm submit`` leave this to that step, which fails at once with the
    same message: the check may import litellm for its price map, seconds a schedule can spare once.)"""
    with sessions() as session:
        for model in dict.fromkeys((run.model, run.sub_model)):
            try:
                price_for(session, model, prices_file=prices_file)
            except UnknownModelPrice as exc:
                why = f"{exc}; every run of this schedule would fail at its first step"
                raise ScheduleError(why) from None


async def create_schedule(
    client: Client,
    sessions: sessionmaker[Session],
    req: ScheduleRequest,
    task_queue: str,
    *,
    prices_file: Path | None = None,
) -> None:
    """Create the schedule, its run's inputs stored once; ``prices_file`` is the deployment's
    ``RLM_PRICES_FILE``, for the check that its models have a price."""
    name = check_name(req.name)
    if not req.cron.strip():
        raise ScheduleError('--cron must not be empty; give e.g. --cron "0 2 * * *" (02:00 UTC daily)')
    overlap = OVERLAP.get(req.overlap)
    if overlap is None:
        raise ScheduleError(f"--overlap {req.overlap!r} is not known; use one of: {', '.join(OVERLAP)}")
    run = checked(req.run)
    check_priced(sessions, run.request, prices_file)
    inp = launch_input(sessions, name, run)
    first_line = (run.query.strip().splitlines() or [""])[0][:200]
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(Launcher.run, inp, id=name, task_queue=task_queue),
        spec=ScheduleSpec(cron_expressions=[req.cron]),
        policy=SchedulePolicy(overlap=overlap),
        state=ScheduleState(paused=req.paused, note=req.note),
    )
    memo = {
        "tenant": run.request.tenant,
        "query": first_line,
        "context": " ".join(map(str, run.request.context_paths)),
        "cron": req.cron,
    }
    try:
        await client.create_schedule(name, schedule, memo=memo)
    except ScheduleAlreadyRunningError:
        raise ScheduleError(
            f"schedule {name!r} exists already; delete it first (rlm schedule delete {name}) "
            "or pick another name"
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ScheduleError(f"schedule {name!r} was refused: {exc.message}; check --cron") from None
        raise
    log.info("schedule.created", schedule=name, cron=req.cron, tenant=run.request.tenant)


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    cron: str
    tenant: str
    query: str
    paused: bool
    note: str | None
    fires: int
    next_fires: list[datetime]
    recent_runs: list[str]  # run ids (= launcher workflow ids), oldest first
    running_runs: list[str]


async def list_schedules(client: Client) -> list[ScheduleRow]:
    """Every schedule whose action starts the launcher (other schedules of the namespace are skipped)."""
    rows: list[ScheduleRow] = []
    async for entry in await client.list_schedules():
        desc = await client.get_schedule_handle(entry.id).describe()
        action = desc.schedule.action
        if not isinstance(action, ScheduleActionStartWorkflow) or action.workflow != "RlmLauncher":
            continue
        memo = await desc.memo()
        info = desc.info
        rows.append(
            ScheduleRow(
                name=desc.id,
                cron=str(memo.get("cron", "")),
                tenant=str(memo.get("tenant", "")),
                query=str(memo.get("query", "")),
                paused=desc.schedule.state.paused,
                note=desc.schedule.state.note or None,
                fires=info.num_actions,
                next_fires=list(info.next_action_times[:3]),
                recent_runs=[
                    a.action.workflow_id for a in info.recent_actions if hasattr(a.action, "workflow_id")
                ],
                running_runs=[a.workflow_id for a in info.running_actions if hasattr(a, "workflow_id")],
            )
        )
    return sorted(rows, key=lambda r: r.name)


async def schedule_action(client: Client, name: str, action: str, note: str | None = None) -> None:
    """``trigger`` (fire now), ``pause``, ``unpause`` or ``delete`` the schedule ``name``."""
    handle = client.get_schedule_handle(check_name(name))
    try:
        if action == "trigger":
            await handle.trigger()
        elif action == "pause":
            await handle.pause(note=note or "paused with rlm schedule pause")
        elif action == "unpause":
            await handle.unpause(note=note or "unpaused with rlm schedule unpause")
        elif action == "delete":
            await handle.delete()
        else:
            raise ScheduleError(f"unknown schedule action {action!r}")
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ScheduleError(f"no schedule {name!r}; see `rlm schedule list`") from None
        raise
    log.info("schedule.action", schedule=name, action=action)


# --- rlm temporal setup -----------------------------------------------------------------------------

_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}
_NAMES = {value: name for name, value in _TYPES.items()}


@dataclass(frozen=True)
class SetupResult:
    added: list[str]
    present: list[str]


async def setup_search_attributes(
    client: Client, namespace: str, wanted: dict[str, str] | None = None
) -> SetupResult:
    """Register the custom search attributes; already registered with the same type is fine.

    A name registered with another type is an error naming both types (Temporal cannot change a type)."""
    wanted = dict(SEARCH_ATTRIBUTES) if wanted is None else wanted
    ops = client.operator_service
    listed = await ops.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    existing = {**dict(listed.system_attributes), **dict(listed.custom_attributes)}
    added: list[str] = []
    present: list[str] = []
    missing: dict[str, IndexedValueType.ValueType] = {}
    for name, kind in wanted.items():
        value = _TYPES[kind]
        have = existing.get(name)
        if have is None:
            missing[name] = value
        elif have == value:
            present.append(name)
        else:
            raise SearchAttributeConflict(
                f"search attribute {name} is registered as {_NAMES.get(have, have)} on namespace "
                f"{namespace!r}, durable-rlm needs {kind}; remove it (temporal operator search-attribute "
                "remove) or use another namespace"
            )
    if missing:
        try:
            await ops.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
        except RPCError as exc:
            # Another setup may have added them in between; only a real failure is reported.
            if exc.status != RPCStatusCode.ALREADY_EXISTS:
                raise
        added = sorted(missing)
    log.info("temporal.setup", namespace=namespace, added=added, present=present)
    return SetupResult(added, sorted(present))
