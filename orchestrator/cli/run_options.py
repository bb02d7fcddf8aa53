"""The options of a run, declared once for ``rlm run``, ``rlm submit`` and ``rlm schedule create``.

Each command lists the Typer aliases below in its signature (with ``DEFAULT``'s values) and hands its
parameters to ``RunOptions.of``; ``run_request`` turns them, with the settings' defaults, into the
checked ``RunRequest``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import usd

if TYPE_CHECKING:  # the engine is imported when a run is asked for, not for `rlm --help`
    from orchestrator.runs import RunInput
    from orchestrator.settings import Settings
    from orchestrator.workflows.types import Limits

LEAF_MODE_HELP = (
    "llm_query sub-calls as their own Leaf workflows ('workflow'), as local activities of their parent "
    "('inline': about a third of the cost per sub-call), or 'auto': Leaf workflows, inline for a call "
    "of 32 prompts or more; default RLM_LEAF_MODE or 'auto'."
)

RECONNECT_HELP = (
    "Seconds to keep retrying while Temporal or the store does not answer; then exit 7 (the run goes on)."
)

Query = Annotated[str, typer.Argument(help="The question to answer over the context.")]
CONTEXT_HELP = (
    "What `context` is in the REPL: a text file (its text) or a .json file (its value); a directory (every "
    "file below it, by relative path, hidden ones skipped), a .jsonl file (each line) or --context given "
    "more than once make a list of documents, their names in `context.names`. Capped by "
    "RLM_CONTEXT_MAX_DOCUMENTS and RLM_CONTEXT_MAX_BYTES."
)

Context = Annotated[list[Path], typer.Option("--context", metavar="PATH", help=CONTEXT_HELP)]
Tenant = Annotated[str, typer.Option(help="Tenant whose budget pays for the run.")]
Budget = Annotated[str | None, typer.Option("--budget-usd", help="The run's own USD budget.")]
MaxDepth = Annotated[int, typer.Option(help="How deep rlm_query may recurse.")]
Model = Annotated[str | None, typer.Option(help="Root model (litellm string); default RLM_MODEL.")]
SubModel = Annotated[str | None, typer.Option(help="Model of sub-calls; default RLM_SUB_MODEL.")]
Deadline = Annotated[float, typer.Option(help="Seconds the whole tree may take.")]
MaxIter = Annotated[int, typer.Option(help="Iterations per node.")]
MaxSub = Annotated[int, typer.Option(help="Sub-calls per node.")]
Concurrency = Annotated[int, typer.Option(help="Concurrent sub-calls per node.")]
MaxTokens = Annotated[int, typer.Option(help="Completion tokens per model call.")]
CompactAt = Annotated[
    float,
    typer.Option(
        help="Summarise a node's older iterations once its prompt passes this fraction of its model's "
        "context window (0: never)."
    ),
]
ContextWindow = Annotated[
    int,
    typer.Option(help="Context window in tokens for models litellm does not know (0: litellm's model info)."),
]
LeafModeOpt = Annotated[str | None, typer.Option(help=LEAF_MODE_HELP)]
Reconnect = Annotated[float, typer.Option(help=RECONNECT_HELP)]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """What a command's user chose for a run; ``None`` takes the settings' default."""

    tenant: str = "default"
    budget_usd: str | None = None
    max_depth: int = 1
    model: str | None = None
    sub_model: str | None = None
    deadline: float = 3600.0
    run_id: str | None = None
    max_iterations: int = 30
    max_subcalls: int = 500
    # Measured with ops/bench/bench_startup.py --fanout (100 and 300 sub-calls at 500 ms on 2 cores):
    # 16 -> 32 -> 64 cut the wall time each time (7.3 -> 5.5 -> 4.8 s for 100 inline leaves); past 64
    # the gain is small next to the load on a provider, and a worker's model cap defaults to 64 anyway.
    concurrency: int = 64
    max_tokens: int = 4096
    compact_at: float = 0.85
    context_window: int = 0
    leaf_mode: str | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> RunOptions:
        """The options among a command's parameters (its ``locals()``), picked by field name, so no
        command forwards them one by one; a missing one is a bug (``KeyError``), not a default."""
        return cls(**{f.name: params[f.name] for f in dataclasses.fields(cls)})


DEFAULT = RunOptions()


def checked_limits(opts: RunOptions, settings: Settings) -> Limits:
    """The run limits ``opts`` ask for, each checked (one ``RunError`` line naming the option), with the
    settings' for what ``opts`` leave open and for what is the deployment's, not the run's, to say."""
    from orchestrator.runs import RunError, check_limits
    from orchestrator.vocabulary import LeafMode
    from orchestrator.workflows.types import Limits

    for name, value, low in (
        ("--max-depth", opts.max_depth, 0),
        ("--max-iterations", opts.max_iterations, 1),
        ("--max-subcalls", opts.max_subcalls, 0),
        ("--concurrency", opts.concurrency, 1),
        ("--max-tokens", opts.max_tokens, 1),
        ("--context-window", opts.context_window, 0),
    ):
        if value < low:
            raise RunError(f"{name} {value} must be >= {low}")
    if not 0 <= opts.compact_at < 1:  # also refuses nan
        raise RunError(f"--compact-at {opts.compact_at:g} must be >= 0 and < 1 (0: never compact)")
    leaf_mode = opts.leaf_mode or settings.leaf_mode
    if leaf_mode not in tuple(LeafMode):
        raise RunError(f"--leaf-mode {leaf_mode!r} is not known; use auto, workflow or inline")
    limits = Limits(
        max_depth=opts.max_depth,
        max_iterations=opts.max_iterations,
        max_subcalls=opts.max_subcalls,
        max_concurrency=opts.concurrency,
        max_tokens=opts.max_tokens,
        compact_at=opts.compact_at,
        context_window=opts.context_window,
        leaf_mode=LeafMode(leaf_mode),
        heartbeat_timeout_s=settings.heartbeat_timeout_s,
        max_run_events=settings.max_run_events,
        max_run_bytes=settings.max_run_bytes,
    )
    check_limits(limits)
    return limits


def run_request(settings: Settings, query: str, context: list[Path], opts: RunOptions) -> RunInput:
    """The run `rlm run`, `rlm submit` and `rlm schedule create` ask for, with the settings' defaults,
    checked (its context read, within the settings' limits) before a server is started or contacted."""
    from orchestrator.corpus import ContextLimits
    from orchestrator.runs import RunRequest, checked_input

    limits = checked_limits(opts, settings)
    request = RunRequest(
        query=query,
        context_path=tuple(context),
        tenant=opts.tenant,
        budget_usd=usd(opts.budget_usd, "--budget-usd"),
        model=opts.model or settings.model,
        sub_model=opts.sub_model or settings.sub_model,
        deadline_s=opts.deadline,
        run_id=opts.run_id,
        limits=limits,
    )
    return checked_input(request, ContextLimits(settings.context_max_documents, settings.context_max_bytes))
