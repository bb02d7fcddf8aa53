"""The small dataclasses that travel through Temporal: workflow, activity and update inputs and outputs.

They hold ids, limits, numbers and ``Text`` values. A ``Text`` carries short text inline and anything
longer as a reference to a content-addressed blob in the store, so a 10,000,000-character context (or
a batch of 100 one-megabyte chunk prompts) never enters a Temporal payload.
Deterministic code only: imported by workflow modules.
"""

# No ``from __future__ import annotations`` here: Temporal's payload converter calls
# ``typing.get_type_hints`` on every dataclass it decodes, and string annotations are evaluated anew
# each time, which made decoding a ``LeafInput`` four times slower (docs/orchestrator.md).
from dataclasses import dataclass, field

# Statuses (the same strings as the store's ``Status``; workflow modules must not import the store).
RUNNING = "running"
PAUSED = "paused"  # an operator's `rlm pause`, after the current step
PAUSED_BUDGET = "paused_budget"
COMPLETED = "completed"
FAILED = "failed"
TIMED_OUT = "timed_out"
ABORTED = "aborted"

# How an ``llm_query`` sub-call runs: its own ``Leaf`` child workflow, or a local activity inside the
# parent's Update handler (no workflow of its own; about a third of the cost, see docs/orchestrator.md).
LEAF_WORKFLOW = "workflow"
LEAF_INLINE = "inline"
LEAF_MODES = (LEAF_WORKFLOW, LEAF_INLINE)

# Texts longer than this many characters travel as blob references.
INLINE_CHARS = 256


@dataclass(frozen=True)
class Text:
    """A text inline (``inline``) or stored in the blob store (``blob`` = sha256 hex)."""

    inline: str | None = None
    blob: str | None = None

    @property
    def preview(self) -> str:
        return self.inline if self.inline is not None else f"<blob {self.blob}>"


@dataclass(frozen=True)
class Limits:
    max_depth: int = 1
    max_iterations: int = 30
    max_subcalls: int = 500
    max_concurrency: int = 16
    max_tokens: int = 4096
    output_chars: int = 5_000
    cell_timeout_s: float = 120.0
    # A worker that dies mid-cell is noticed after this long; the cell then runs again elsewhere.
    heartbeat_timeout_s: float = 30.0
    # Continue-as-new after this many iterations in one workflow run (0: only when Temporal suggests it).
    iterations_per_run: int = 0
    leaf_mode: str = LEAF_WORKFLOW


@dataclass(frozen=True)
class RunSpec:
    """What every node of one run shares."""

    run_id: str
    tenant: str
    model: str
    sub_model: str
    deadline_epoch_s: float  # one absolute deadline for the whole tree
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Carry:
    """What a node carries into its next run after continue-as-new (between iterations)."""

    iteration: int  # the last finished iteration
    cell_no: int
    subcalls: int
    children: int
    cost_usd: str
    partial: Text | None = None


@dataclass(frozen=True)
class NodeInput:
    """Input of ``RLMNode``. ``query`` None means: derive it from the context (an ``rlm_query`` child)."""

    run: RunSpec
    node_id: str
    parent_id: str | None
    depth: int
    kind: str  # "root" | "rlm"
    model: str
    context: Text
    context_suffix: str = ".txt"
    query: Text | None = None
    carry: Carry | None = None


@dataclass(frozen=True)
class LeafInput:
    run: RunSpec
    node_id: str
    parent_id: str
    depth: int
    model: str
    prompt: Text


@dataclass(frozen=True)
class NodeResult:
    node_id: str
    status: str
    answer: Text | None
    error: str | None = None
    iterations: int = 0
    cost_usd: str = "0"


@dataclass(frozen=True)
class GenerateInput:
    node: NodeInput
    iteration: int
    forced_final: bool = False


@dataclass(frozen=True)
class GenerateOutput:
    status: str  # "ok" | "budget"
    blocks: list[Text] = field(default_factory=list)
    final: Text | None = None  # a plain-text final answer (forced final turn)
    cost_usd: str = "0"
    message: str | None = None  # why the budget refused


@dataclass(frozen=True)
class ExecuteInput:
    node: NodeInput
    iteration: int
    cell: int  # index of the block within the iteration, 0-based
    cell_no: int  # 1-based count of cells in this node; the snapshot after it is stored under it
    code: Text
    children_before: int = 0  # the node's child counter when the cell was scheduled


@dataclass(frozen=True)
class ExecuteOutput:
    answer: Text | None
    ready: bool
    # The child counter after the cell (recorded with it): a node restarted with the same id skips
    # recorded cells and must not hand out their children's ids again.
    children_after: int
    error: str | None = None


@dataclass(frozen=True)
class SubcallBatch:
    """Workflow Update input: the prompts of one ``llm_query[_batched]``/``rlm_query[_batched]`` call."""

    iteration: int
    cell: int
    seq: int
    kind: str  # "llm" | "rlm"
    prompts: list[Text]
    model: str | None = None
    titles: list[str] = field(default_factory=list)  # each prompt's first line, for the child's memo


@dataclass(frozen=True)
class SubcallReply:
    answers: list[Text] = field(default_factory=list)
    error: str | None = None  # the call was refused (limits, the server's update limit): nothing started
    started: int = 0  # children this call started (0 when refused)
    # Positions whose sub-call ended without an answer; their answers are ``failed_item`` markers.
    failed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LeafCallOutput:
    status: str  # "ok" | "budget"
    answer: Text | None = None
    cost_usd: str = "0"
    message: str | None = None


@dataclass(frozen=True)
class NodeEvent:
    """A store write about a node: it started, changed status, or finished."""

    run_id: str
    node_id: str
    parent_id: str | None
    depth: int
    kind: str
    status: str
    tenant: str  # for the activity's log context
    answer: Text | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChildState:
    node_id: str
    status: str  # running until the child's result came back
    cost_usd: str = "0"


@dataclass(frozen=True)
class NodeState:
    """Answer of the ``state`` query: the node's live state."""

    node_id: str
    status: str
    iteration: int
    subcalls: int
    children: int
    cost_usd: str  # the node's own model calls
    message: str | None  # why it is paused, or why it ended
    step: str = ""  # what it is doing: "generate 3", "cell 3.0", "paused", "done"
    last_error: str | None = None  # the last cell error or failed sub-call seen
    children_cost_usd: str = "0"  # spend of the children whose results came back
    child_states: list[ChildState] = field(default_factory=list)
    held_subcalls: int = 0  # sub-calls waiting to start until an operator's pause is lifted


# What a batched sub-call returns in place of an item whose child ended without an answer; the system
# prompt (orchestrator/protocol/prompts.py) tells the model to test for this prefix.
FAILED_ITEM_PREFIX = "Error: sub-call "
FAILED_REASON_CHARS = 500


def failed_item(node_id: str, status: str, reason: str | None) -> str:
    """The marker of a failed item: ``Error: sub-call <child id> ended <status>: <reason>``."""
    why = (reason or "no reason given")[:FAILED_REASON_CHARS]
    return f"{FAILED_ITEM_PREFIX}{node_id} ended {status}: {why}"


def update_id(node_id: str, iteration: int, cell: int, seq: int) -> str:
    """Deterministic: a re-executed cell re-asks with the same id and gets the first answer."""
    return f"{node_id}/{iteration}/{cell}/{seq}"


def child_id(node_id: str, number: int) -> str:
    """Readable tree ids: the 3rd child of ``run/0`` is ``run/0.3``, its first child ``run/0.3.1``."""
    return f"{node_id}.{number}"


def root_id(run_id: str) -> str:
    return f"{run_id}/0"
