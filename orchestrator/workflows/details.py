"""What the Temporal Web UI shows of a node beside its id: a summary and static details fixed at start,
and current details the node keeps up to date (``workflow.set_current_details``; the UI reads them
through the built-in metadata query, so an update costs no history event).

Markdown, short, for an operator scanning a tree: what the node was asked, what it is doing now,
how far its sub-calls got, what it spent, the last thing that went wrong. Deterministic code only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from orchestrator.vocabulary import FINAL_STATUSES, PAUSED_STATUSES, NodeKind, Status
from orchestrator.workflows.types import ChildState, LeafInput, Limits, NodeInput, NodeState, RunSpec

SUMMARY_CHARS = 200
ERROR_CHARS = 300


def first_line(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    line = next((part.strip() for part in text.strip().splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def static_details(node: NodeInput | LeafInput) -> str:
    """Fixed at start: where the node sits in its run and what it runs with."""
    run = node.run
    kind = node.kind if isinstance(node, NodeInput) else NodeKind.LEAF
    lines = [
        f"**Run** `{run.run_id}` · **tenant** `{run.tenant}`",
        f"**Node** `{node.node_id}` · {kind} · depth {node.depth} of {run.limits.max_depth}",
        f"**Model** `{node.model}`",
    ]
    if kind == NodeKind.ROOT:
        lines.append(_limits(run))
    return "\n\n".join(lines)


@dataclass
class ChildTally:
    """A node's sub-calls counted by how they stand, kept up to date one change at a time.

    The details are rebuilt on every change of a sub-call; counting over all of them each time made a
    fan-out's work grow with the square of its width."""

    running: int = 0
    finished: int = 0
    failed: int = 0  # finished without an answer

    @classmethod
    def of(cls, children: Iterable[ChildState]) -> ChildTally:
        tally = cls()
        for child in children:
            tally._add(child, 1)
        return tally

    def replace(self, old: ChildState | None, new: ChildState) -> None:
        """``old`` (None for a new sub-call) now stands as ``new``."""
        if old is not None:
            self._add(old, -1)
        self._add(new, 1)

    def _add(self, child: ChildState, sign: int) -> None:
        if child.status not in FINAL_STATUSES:
            self.running += sign
            return
        self.finished += sign
        if child.status != Status.COMPLETED:
            self.failed += sign


def node_details(state: NodeState, limits: Limits, tally: ChildTally) -> str:
    """An RLM node now: its step, its sub-calls (``tally``: its ``child_states`` counted), its spend
    and its last error."""
    of = (
        f"of {limits.max_iterations}"
        if state.iteration <= limits.max_iterations
        else "(the forced final one)"
    )
    lines = [f"**Iteration** {state.iteration} {of} · {_doing(state, tally.running)}"]
    if state.children:
        subcalls = f"**Sub-calls** {tally.finished} of {state.children} finished"
        if tally.failed:
            subcalls += f", {tally.failed} without an answer"
        if state.held_subcalls:
            subcalls += f", {state.held_subcalls} held by a pause"
        lines.append(subcalls)
    own, children = Decimal(state.cost_usd), Decimal(state.children_cost_usd)
    lines.append(
        f"**Spend** {_usd(own + children)} (this node {_usd(own)}, finished sub-calls {_usd(children)})"
    )
    if state.last_error:
        lines.append(f"**Last error** {first_line(state.last_error, ERROR_CHARS)}")
    return "\n\n".join(lines)


def leaf_details(state: NodeState, model: str) -> str:
    """A leaf now: its one model call, a budget hold, or how it ended."""
    now = f"one completion by `{model}`" if state.status == Status.RUNNING else _status_line(state)
    return f"{now}\n\n**Spend** {_usd(Decimal(state.cost_usd))}"


def _usd(amount: Decimal) -> str:
    # Not "$": the Web UI's markdown reads a pair of dollar signs as inline math.
    return f"{amount:.6f} USD"


def _doing(state: NodeState, running: int) -> str:
    if state.status != Status.RUNNING:
        return _status_line(state)
    kind, _, where = state.step.partition(" ")
    if kind == "generate":
        return "the model is writing its reply"
    if kind == "cell":
        doing = f"running cell {where}"
        return doing + (f", {running} sub-calls in flight" if running else "")
    return "starting"


def _status_line(state: NodeState) -> str:
    if state.status in PAUSED_STATUSES or state.status in FINAL_STATUSES:
        reason = f": {first_line(state.message, ERROR_CHARS)}" if state.message else ""
        return f"**{state.status}**{reason}"
    return str(state.status)


def _limits(run: RunSpec) -> str:
    limits = run.limits
    deadline = datetime.fromtimestamp(run.deadline_epoch_s, UTC)
    return (
        f"**Limits** {limits.max_iterations} iterations · {limits.max_subcalls} sub-calls per node, "
        f"{limits.max_concurrency} at once · {limits.leaf_mode} leaves · "
        f"deadline {deadline:%Y-%m-%d %H:%M:%S} UTC"
    )
