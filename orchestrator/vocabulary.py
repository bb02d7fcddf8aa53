"""The project's enumerations, defined once: workflows, activities, the store, control and the CLI all
import them from here. Deterministic and dependency-free, so workflow modules may import it.

Each is a ``StrEnum``: its members are the strings stored in the database, sent in Temporal payloads and
shown to operators, so ``Status.RUNNING == "running"`` and a JSON payload carries ``"running"``.
"""

from __future__ import annotations

from enum import StrEnum

# The sandbox's wire protocol owns the sub-call kinds (llm: a leaf, rlm: an RLM node, note: a session's
# remember); ``sandbox.api`` is dependency-free like this module.
from sandbox.api import SubcallKind as SubcallKind


class Status(StrEnum):
    """Statuses shared by runs and nodes."""

    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"  # an operator's `rlm pause`, after the current step
    PAUSED_BUDGET = "paused_budget"  # a budget refused a model call; waits for `rlm resume`
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


FINAL_STATUSES = frozenset(
    {Status.COMPLETED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED, Status.CANCELLED}
)
PAUSED_STATUSES = frozenset({Status.PAUSED, Status.PAUSED_BUDGET})


class NodeKind(StrEnum):
    ROOT = "root"  # the run's first RLM node
    RLM = "rlm"  # an `rlm_query` sub-call within the depth limit
    LEAF = "leaf"  # one plain completion: `llm_query`, or `rlm_query` past the depth limit


class StepKind(StrEnum):
    """What a recorded step of a node was."""

    GENERATE = "generate"  # the model wrote the next reply
    CELL = "cell"  # one code block ran in the sandbox
    LEAF = "leaf"  # a leaf's single completion
    COMPACT = "compact"  # older iterations summarised to keep the next prompt inside the window


# Under ``LeafMode.AUTO``, a call of this many leaf prompts or more runs its leaves inline: a fan-out
# that wide is watched and steered through its parent, not leaf by leaf in the Web UI, and inline it
# costs about a third of the CPU per leaf (docs/orchestrator.md, "Leaf modes").
AUTO_INLINE_FROM = 32


class LeafMode(StrEnum):
    """How an ``llm_query`` sub-call runs."""

    AUTO = "auto"  # a `Leaf` workflow each, inline for a call of AUTO_INLINE_FROM prompts or more
    WORKFLOW = "workflow"  # a `Leaf` child workflow each
    INLINE = "inline"  # a local activity of the parent (no workflow of its own)

    def runs_inline(self, prompts: int) -> bool:
        """Whether the leaves of one call of ``prompts`` prompts run inline."""
        return self == LeafMode.INLINE or (self == LeafMode.AUTO and prompts >= AUTO_INLINE_FROM)


class ModelCalls(StrEnum):
    """Where a worker makes its model calls (litellm's request, response and bookkeeping)."""

    AUTO = "auto"  # a process of their own for `rlm dev` and `rlm worker`; in the worker for any other
    PROCESS = "process"  # a child process of the worker: its interpreter no longer shares them with the rest
    WORKER = "worker"  # in the worker's own interpreter

    def in_process_of_their_own(self, long_lived: bool) -> bool:
        """Whether a worker (``long_lived``: ``rlm dev`` or ``rlm worker``) makes its calls in a child."""
        return self == ModelCalls.PROCESS or (self == ModelCalls.AUTO and long_lived)


class Outcome(StrEnum):
    """How a model step that reserves budget came back."""

    OK = "ok"
    BUDGET = "budget"  # the budget refused the reservation: nothing was called or spent
    ABORTED = "aborted"  # `rlm abort` stopped the call in flight: nothing was spent


class SessionStatus(StrEnum):
    """Where a session is: open takes turns (``rlm ask``); closed keeps its turns for reading only."""

    OPEN = "open"
    CLOSED = "closed"
