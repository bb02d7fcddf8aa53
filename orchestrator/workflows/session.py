"""``RLMSession``: one long-lived workflow per session; each ``ask`` becomes a turn, a run of its own.

Asks queue and run one at a time, in order. A turn's run is registered by an activity (the one
run-start path, ``register_run``, like a schedule's launcher), then its root ``RLMNode`` runs as this
workflow's child (abandoned, not cancelled, if the session's workflow closes: ending a session never
kills a turn), then an activity records the turn's answer. The ``ask`` Update returns the turn's number
and run id as soon as the turn is queued (``orchestrator.sessions.ask`` then waits for the run's
registration in the store): an Update still running could not cross a continue-as-new, and a session
asked back to back would otherwise never start afresh. The session's memory (documents, turns, notes)
is in the store; this workflow carries only counters and the queue's blob references, and continues
as new every ``turns_per_run`` turns or when Temporal suggests it, queued asks included.

Deterministic code only; activities are named by string.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from orchestrator.vocabulary import Status
from orchestrator.workflows import common
from orchestrator.workflows.node import RLMNode
from orchestrator.workflows.types import NodeInput, NodeResult, Text

TURN_START = "session_turn_start"
TURN_FINISH = "session_turn_finish"
# Store writes of a few rows: a turn whose worker died is retried this soon.
TURN_TIMEOUT = timedelta(seconds=20)
# Run ids hold at most 128 characters: the name is cut, the session's id keeps them unique.
NAME_CHARS = 96
# Continue-as-new after this many turns (each adds ~20 events), well inside Temporal's history limits.
TURNS_PER_RUN = 50


def session_workflow_id(tenant: str, name: str) -> str:
    return f"session/{tenant}/{name}"


def turn_run_id(name: str, session_id: int, turn: int) -> str:
    """``<name>.s<id>.t<turn>``: read from the right, the digits make it unique across tenants."""
    return f"{name[:NAME_CHARS]}.s{session_id}.t{turn}"


@dataclass(frozen=True)
class Ask:
    turn: int
    question: Text


@dataclass(frozen=True)
class SessionInput:
    session_id: int
    tenant: str
    name: str
    next_turn: int = 1
    turns_per_run: int = TURNS_PER_RUN
    queue: list[Ask] = field(default_factory=list)  # asks accepted, not started (continue-as-new)
    refused: dict[int, str] = field(default_factory=dict)  # carried: an asker may not have read it yet


@dataclass(frozen=True)
class AskRequest:
    question: Text  # stored by the caller: the question never enters the history inline when long


@dataclass(frozen=True)
class AskReply:
    turn: int
    run_id: str


@dataclass(frozen=True)
class CloseRequest:
    reason: str = ""


@dataclass(frozen=True)
class TurnRequest:
    session_id: int
    tenant: str
    name: str
    turn: int
    run_id: str
    question: Text


@dataclass(frozen=True)
class TurnStarted:
    root: NodeInput
    memo: dict[str, str]


@dataclass(frozen=True)
class TurnEnded:
    session_id: int
    turn: int
    status: str
    answer: Text | None
    error: str | None


@dataclass
class SessionState:
    """The ``state`` query's answer."""

    session_id: int
    next_turn: int
    registered: int  # the last turn whose run is registered
    current: int | None = None  # the turn running now
    queued: int = 0
    closing: bool = False
    refused: dict[int, str] = field(default_factory=dict)  # turns whose run could not be registered


@workflow.defn(name="RLMSession")
class RLMSession:
    @workflow.init
    def __init__(self, inp: SessionInput) -> None:
        self._inp = inp
        self._queue: list[Ask] = list(inp.queue)
        self._next = inp.next_turn
        self._registered = inp.next_turn - 1 - len(inp.queue)
        self._current: int | None = None
        self._closing = False
        # Turns whose run could not be registered (askers read them in ``state``); the session goes on.
        self._refused: dict[int, str] = dict(inp.refused)

    @workflow.update
    def ask(self, req: AskRequest) -> AskReply:
        turn = self._next
        self._next += 1
        self._queue.append(Ask(turn, req.question))
        return AskReply(turn, turn_run_id(self._inp.name, self._inp.session_id, turn))

    @ask.validator
    def _check_ask(self, req: AskRequest) -> None:
        if self._closing:
            raise ApplicationError(f"session {self._inp.name!r} is closed", non_retryable=True)

    @workflow.signal
    def close(self, req: CloseRequest) -> None:
        self._closing = True

    @workflow.query
    def state(self) -> SessionState:
        return SessionState(
            session_id=self._inp.session_id, next_turn=self._next, registered=self._registered,
            current=self._current, queued=len(self._queue), closing=self._closing,
            refused=dict(self._refused),
        )  # fmt: skip

    @workflow.run
    async def run(self, inp: SessionInput) -> None:
        done = 0
        while True:
            await workflow.wait_condition(lambda: bool(self._queue) or self._closing)
            if not self._queue:
                # Closing with nothing queued: ask handlers still waiting can only be for queued turns.
                await workflow.wait_condition(workflow.all_handlers_finished)
                return
            await self._turn(self._queue.pop(0))
            done += 1
            if not self._closing and (
                done >= inp.turns_per_run or workflow.info().is_continue_as_new_suggested()
            ):
                # Between turns; asks return at once, so no handler is left to cross into the next run.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    dataclasses.replace(
                        inp, next_turn=self._next, queue=list(self._queue), refused=dict(self._refused)
                    )
                )

    async def _turn(self, ask: Ask) -> None:
        inp = self._inp
        run_id = turn_run_id(inp.name, inp.session_id, ask.turn)
        self._current = ask.turn
        try:
            started: TurnStarted = await workflow.execute_activity(
                TURN_START,
                TurnRequest(inp.session_id, inp.tenant, inp.name, ask.turn, run_id, ask.question),
                result_type=TurnStarted,
                start_to_close_timeout=TURN_TIMEOUT,
                retry_policy=common.STORE_RETRY,
            )
        except ActivityError as err:
            self._refused[ask.turn] = f"turn {ask.turn} could not be registered: {err.cause or err}"
            self._registered, self._current = ask.turn, None
            return
        self._registered = ask.turn
        root = started.root
        try:
            result: NodeResult = await workflow.execute_child_workflow(
                RLMNode.run,
                root,
                id=root.node_id,
                search_attributes=common.search_attributes(root.run, 0, Status.RUNNING),
                memo=dict(started.memo),
                parent_close_policy=ParentClosePolicy.ABANDON,
                task_timeout=common.task_timeout(root.run),
            )
            ended = TurnEnded(inp.session_id, ask.turn, result.status, result.answer, result.error)
        except ChildWorkflowError as err:
            ended = TurnEnded(
                inp.session_id, ask.turn, Status.FAILED, None, f"root failed: {err.cause or err}"
            )
        await workflow.execute_activity(
            TURN_FINISH,
            ended,
            start_to_close_timeout=TURN_TIMEOUT,
            retry_policy=common.STORE_RETRY,
        )
        self._current = None
