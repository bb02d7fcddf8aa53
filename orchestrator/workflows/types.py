"""The small dataclasses that travel through Temporal: workflow, activity and update inputs and outputs.

They hold ids, limits, numbers and ``Text`` values. A ``Text`` carries short text inline and anything
longer as a reference to a content-addressed blob in the store, so a 10,000,000-character context (or
a batch of 100 one-megabyte chunk prompts) never enters a Temporal payload.
Deterministic code only: imported by workflow modules.
"""

# No ``from __future__ import annotations`` here: Temporal's payload converter calls
# ``typing.get_type_hints`` on every dataclass it decodes, and string annotations are evaluated anew
# each time, which made decoding a ``LeafInput`` four times slower (docs/orchestrator.md).
import hashlib
from dataclasses import dataclass, field

from orchestrator.vocabulary import LeafMode, NodeKind, Outcome, Status, SubcallKind

# Texts longer than this many characters travel as blob references.
INLINE_CHARS = 256


@dataclass(frozen=True, kw_only=True)
class Text:
    """A text inline (``inline``) or stored in the blob store (``blob`` = sha256 hex)."""

    inline: str | None = None
    blob: str | None = None

    @property
    def preview(self) -> str:
        return self.inline if self.inline is not None else f"<blob {self.blob}>"


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_depth: int = 1
    max_iterations: int = 30
    max_subcalls: int = 500
    max_concurrency: int = 64
    max_tokens: int = 4096
    output_chars: int = 5_000
    cell_timeout_s: float = 120.0
    # A worker that dies mid-cell or mid-`generate` is noticed after this long; the step then runs
    # again elsewhere.
    heartbeat_timeout_s: float = 30.0
    # Continue-as-new after this many iterations in one workflow run (0: only when Temporal suggests it).
    iterations_per_run: int = 0
    leaf_mode: LeafMode = LeafMode.AUTO
    # Older iterations are summarised once the next prompt would pass this fraction of the root
    # model's context window (0: never compact).
    compact_at: float = 0.85
    # The window in tokens for models litellm does not know (0: litellm's model info decides).
    context_window: int = 0
    # A node's workflow run takes new sub-calls while its history, theirs counted, stays under this many
    # events and bytes: the Temporal server terminates a workflow past 51,200 events or 50 MB (its default
    # limit.historyCount.error and limit.historySize.error). Set from RLM_MAX_RUN_EVENTS and
    # RLM_MAX_RUN_BYTES where runs are started, for a server whose limits differ.
    max_run_events: int = 45_000
    # Under the server's default size limit by what the node itself may add after a batch (its later
    # steps, failed items' reasons in the reply), as max_run_events is under its count.
    max_run_bytes: int = 45_000_000


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What every node of one run shares."""

    run_id: str
    tenant: str
    model: str
    sub_model: str
    deadline_epoch_s: float  # one absolute deadline for the whole tree
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, kw_only=True)
class ChildState:
    node_id: str
    status: Status  # running until the child's result came back
    cost_usd: str = "0"


@dataclass(kw_only=True)
class NodeState:
    """A node's visible state, kept in one place: the ``state`` query's answer, and what the node
    carries into its next run (continue-as-new) or a restart builds from the store. Mutable: the
    workflow updates it as it goes."""

    node_id: str
    status: Status = Status.RUNNING
    iteration: int = 0  # the current iteration (carried: the last finished one)
    cells: int = 0  # cells run in this node; the REPL snapshot after the n-th is stored under n
    children: int = 0  # sub-calls started; the next child is number children + 1
    cost_usd: str = "0"  # the node's own model calls
    children_cost_usd: str = "0"  # spend of the children whose results came back
    partial: Text | None = None  # the last answer a cell set without marking it final
    message: str | None = None  # why it is paused, or why it ended
    step: str = ""  # what it is doing: "generate 3", "cell 3.0", "paused", "done"
    last_error: str | None = None  # the last cell error or failed sub-call seen
    child_states: list[ChildState] = field(default_factory=list)
    held_subcalls: int = 0  # sub-calls waiting to start until an operator's pause is lifted


@dataclass(frozen=True, kw_only=True)
class TurnSpec:
    """A session turn's root: where its REPL finds ``history``, ``notes`` and the last turn's variables."""

    session_id: int
    turn: int
    previous_root: str | None = None  # the previous turn's root node: its latest snapshot is restored


@dataclass(frozen=True, kw_only=True)
class NodeInput:
    """Input of ``RLMNode``. ``query`` None means: derive it from the context (an ``rlm_query`` child)."""

    run: RunSpec
    node_id: str
    parent_id: str | None
    depth: int
    kind: NodeKind  # ROOT or RLM
    model: str
    context: Text
    context_suffix: str = ".txt"
    query: Text | None = None
    # A node going on where an earlier run of it stopped: after continue-as-new, or restarted.
    carry: NodeState | None = None
    # Only the root of a session's turn.
    session: TurnSpec | None = None


@dataclass(frozen=True, kw_only=True)
class LeafInput:
    run: RunSpec
    node_id: str
    parent_id: str
    depth: int
    model: str
    prompt: Text


@dataclass(frozen=True, kw_only=True)
class NodeResult:
    node_id: str
    status: Status
    answer: Text | None
    error: str | None = None
    iterations: int = 0
    cost_usd: str = "0"


@dataclass(frozen=True, kw_only=True)
class GenerateInput:
    node: NodeInput
    iteration: int
    forced_final: bool = False


@dataclass(frozen=True, kw_only=True)
class GenerateOutput:
    status: Outcome
    blocks: list[Text] = field(default_factory=list)
    final: Text | None = None  # a plain-text final answer (forced final turn)
    cost_usd: str = "0"
    message: str | None = None  # why the budget refused


@dataclass(frozen=True, kw_only=True)
class ExecuteInput:
    node: NodeInput
    iteration: int
    # Two counters name a cell: its ``index`` among its iteration's code blocks (0-based; the step's
    # index in the store) and its ``number`` among all the node's cells (1-based; the REPL snapshot
    # after it is stored under it, ``NodeState.cells`` is the last one).
    index: int
    number: int
    code: Text
    children_before: int = 0  # the node's child counter when the cell was scheduled


@dataclass(frozen=True, kw_only=True)
class ExecuteOutput:
    answer: Text | None
    ready: bool
    # The child counter after the cell (recorded with it): a node restarted with the same id skips
    # recorded cells and must not hand out their children's ids again.
    children_after: int
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class SubcallBatch:
    """Workflow Update input: the prompts of one ``llm_query[_batched]``/``rlm_query[_batched]`` call."""

    iteration: int
    index: int  # the cell's, within its iteration
    seq: int  # the call's, within its cell (1-based)
    kind: SubcallKind
    prompts: list[Text]
    model: str | None = None
    titles: list[str] = field(default_factory=list)  # each prompt's first line, for the child's memo


@dataclass(frozen=True, kw_only=True)
class SubcallReply:
    answers: list[Text] = field(default_factory=list)
    error: str | None = None  # the call was refused (limits, the server's update limit): nothing started
    started: int = 0  # children this call started (0 when refused)
    # Positions whose sub-call ended without an answer; their answers are ``failed_item`` markers.
    failed: list[int] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class LeafCallOutput:
    status: Outcome
    answer: Text | None = None
    cost_usd: str = "0"
    message: str | None = None


@dataclass(frozen=True, kw_only=True)
class NodeEvent:
    """A store write about a node: it started, changed status, or finished."""

    run_id: str
    node_id: str
    parent_id: str | None
    depth: int
    kind: NodeKind
    status: Status
    tenant: str  # for the activity's log context
    answer: Text | None = None
    error: str | None = None
    # A final status releases what the node's calls still hold, unless a call may yet settle: a node
    # terminated in Temporal, whose end its parent records, can have one running on as an orphan.
    release_holds: bool = True
    # The node's first write of a fresh start: an abort mark an earlier workflow of its id left goes.
    starting: bool = False


# What a batched sub-call returns in place of an item whose child ended without an answer; the system
# prompt (orchestrator/protocol/prompts.py) tells the model to test for this prefix.
FAILED_ITEM_PREFIX = "Error: sub-call "
FAILED_REASON_CHARS = 500


def failed_item(
    node_id: str, status: str, reason: str | None, reason_chars: int = FAILED_REASON_CHARS
) -> str:
    """The marker of a failed item: ``Error: sub-call <child id> ended <status>: <reason>``."""
    why = (reason or "no reason given")[:reason_chars]
    return f"{FAILED_ITEM_PREFIX}{node_id} ended {status}: {why}"


def text_sha256(text: str) -> str:
    """The name of a text's blob: the store keeps every text under the sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode()).hexdigest()


def update_id(node_id: str, iteration: int, index: int, seq: int) -> str:
    """Deterministic: a re-executed cell re-asks with the same id and gets the first answer."""
    return f"{node_id}/{iteration}/{index}/{seq}"


def child_id(node_id: str, number: int) -> str:
    """Readable tree ids: the 3rd child of ``run/0`` is ``run/0.3``, its first child ``run/0.3.1``."""
    return f"{node_id}.{number}"


def root_id(run_id: str) -> str:
    return f"{run_id}/0"
