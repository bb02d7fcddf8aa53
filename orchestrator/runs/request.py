"""What a run is asked for (``RunRequest``) and the one check of it (``checked_input``).

Every path that starts runs (``rlm run``, ``rlm submit``, ``rlm schedule create`` and code calling
``orchestrator.runs``) checks the query, the deadline, a scripted model's string and the context here,
before anything is stored. The context is read once, by the check; ``RunInput`` carries its bytes from
then on: a single text or ``.json`` file as it is, anything else (a directory, a ``.jsonl`` file,
several paths) as one corpus (``orchestrator.corpus``).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from orchestrator import corpus
from orchestrator.corpus import ContextLimits, CorpusError
from orchestrator.errors import RlmError
from orchestrator.ids import MAX_CHARS, check_run_id, check_tenant
from orchestrator.llm import scripted_model
from orchestrator.workflows.types import Limits

DEFAULT_TENANT = "default"
# The one cap of a run's --deadline; past a year, a scheduled job is the better tool.
MAX_DEADLINE_S = 365 * 24 * 3600.0
# Past these a value is a typo, not a setting: no model writes a million tokens in one reply.
MAX_TOKENS = 1_000_000
# A node's sub-calls in flight are its pending child workflows, and Temporal refuses a workflow more
# than 2,000 of those by default (limit.numPendingChildExecutions.error): the node's workflow task
# then fails on every retry and the node stands still. Half of that leaves room for a lowered limit.
MAX_CONCURRENCY = 1_000
MAX_DEPTH = 1_000
MAX_COUNT = 1_000_000_000  # iterations, sub-calls
MAX_CONTEXT_WINDOW = 100_000_000
# The Temporal server's longest workflow id (limit.maxIDLength): a node's id is its run's id, "/0", then
# ".<n>" for each level of the tree, and a child whose id is longer cannot start (its parent's
# workflow task fails on every retry).
MAX_WORKFLOW_ID = 1_000
CONTEXT_KINDS = corpus.KINDS


class RunError(RlmError):
    """A run cannot be started as asked; the message says what to change."""


@dataclass(frozen=True)
class RunRequest:
    query: str
    # One path, or several (repeated --context), read in the order given.
    context_path: Path | tuple[Path, ...]
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

    @property
    def context_paths(self) -> tuple[Path, ...]:
        return (self.context_path,) if isinstance(self.context_path, Path) else tuple(self.context_path)


@dataclass(frozen=True)
class RunInput:
    """A ``RunRequest`` after ``checked_input``: its context read (once) and found usable."""

    request: RunRequest
    context: bytes
    context_suffix: str  # ".txt", ".json" (the sandbox parses it) or ".docs" (a corpus: corpus.pack)

    @property
    def query(self) -> str:
        return self.request.query


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def checked(run: RunRequest | RunInput, limits: ContextLimits | None = None) -> RunInput:
    """``run`` checked: a ``RunInput`` is passed through, a ``RunRequest`` goes through ``checked_input``."""
    return run if isinstance(run, RunInput) else checked_input(run, limits)


def checked_input(req: RunRequest, limits: ContextLimits | None = None) -> RunInput:
    """The one check of a run's query, deadline and context, done before anything is stored.

    ``limits`` caps the context (default: ``ContextLimits()``; the CLI passes the settings')."""
    if not req.query.strip():
        raise RunError("the query is empty; give the question to answer over the context")
    if not 0 < req.deadline_s <= MAX_DEADLINE_S:  # also refuses nan
        raise RunError(
            f"--deadline {req.deadline_s:g} is out of range; give the seconds the whole tree may take, "
            f"more than 0 and at most {MAX_DEADLINE_S:.0f} (one year)"
        )
    check_limits(req.limits)
    try:
        scripted_model.check(req.model, req.sub_model)
    except scripted_model.ScriptedModelError as exc:
        raise RunError(str(exc)) from None
    paths = req.context_paths
    if not paths:
        raise RunError(f"no context was given; pass --context PATH to {CONTEXT_KINDS}")
    try:
        if corpus.is_corpus(paths):
            return RunInput(req, corpus.pack(corpus.read_documents(paths, limits)), corpus.SUFFIX)
        data, suffix = _context(paths[0], limits)
    except CorpusError as exc:
        raise RunError(str(exc)) from None
    return RunInput(req, data, suffix)


def check_limits(limits: Limits) -> None:
    """The limits' upper bounds (a run's, or a session's for all its turns); the CLI checks the lower."""
    for option, value, most in (
        ("--max-depth", limits.max_depth, MAX_DEPTH),
        ("--max-iterations", limits.max_iterations, MAX_COUNT),
        ("--max-subcalls", limits.max_subcalls, MAX_COUNT),
        ("--max-tokens", limits.max_tokens, MAX_TOKENS),
        ("--concurrency", limits.max_concurrency, MAX_CONCURRENCY),
        ("--context-window", limits.context_window, MAX_CONTEXT_WINDOW),
    ):
        if value > most:
            raise RunError(f"{option} {value} is out of range; give at most {most}")
    # The deepest node is a leaf below the deepest RLM node; any run id may name the run.
    per_level = 1 + len(str(max(1, limits.max_subcalls)))
    longest = MAX_CHARS + len("/0") + (limits.max_depth + 1) * per_level
    if longest > MAX_WORKFLOW_ID:
        deepest = (MAX_WORKFLOW_ID - MAX_CHARS - len("/0")) // per_level - 1
        raise RunError(
            f"--max-depth {limits.max_depth} with --max-subcalls {limits.max_subcalls} makes node ids of up "
            f"to {longest:,} characters, and Temporal takes workflow ids of at most {MAX_WORKFLOW_ID:,}; "
            f"give --max-depth at most {deepest}"
        )


def _context(path: Path, limits: ContextLimits | None) -> tuple[bytes, str]:
    """A single text or ``.json`` file: stored as it is, as a context always was."""
    data = corpus.read_file(path, limits, hint=f"pass --context PATH to {CONTEXT_KINDS}")
    suffix = ".json" if path.suffix == ".json" else ".txt"
    if suffix == ".json":
        try:
            json.loads(data.decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise RunError(
                f"context {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                "fix it, or give the file another suffix than .json to pass it as text"
            ) from None
    return data, suffix
