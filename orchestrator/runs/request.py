"""What a run is asked for (``RunRequest``) and the one check of it (``checked_input``).

Every path that starts runs (``rlm run``, ``rlm submit``, ``rlm schedule create`` and code calling
``orchestrator.runs``) checks the query, the deadline and the context file here, before anything is
stored. The context file is read once, by the check; ``RunInput`` carries its bytes from then on.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from orchestrator.errors import RlmError
from orchestrator.ids import check_run_id, check_tenant
from orchestrator.workflows.types import Limits

DEFAULT_TENANT = "default"
# The one cap of a run's --deadline; past a year, a scheduled job is the better tool.
MAX_DEADLINE_S = 365 * 24 * 3600.0
CONTEXT_KINDS = "a UTF-8 text file or a .json file"


class RunError(RlmError):
    """A run cannot be started as asked; the message says what to change."""


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


@dataclass(frozen=True)
class RunInput:
    """A ``RunRequest`` after ``checked_input``: its context read (once) and found usable."""

    request: RunRequest
    context: bytes
    context_suffix: str  # ".json" (the sandbox parses it) or ".txt"

    @property
    def query(self) -> str:
        return self.request.query


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def checked(run: RunRequest | RunInput) -> RunInput:
    """``run`` checked: a ``RunInput`` is passed through, a ``RunRequest`` goes through ``checked_input``."""
    return run if isinstance(run, RunInput) else checked_input(run)


def checked_input(req: RunRequest) -> RunInput:
    """The one check of a run's query, deadline and context file, done before anything is stored."""
    if not req.query.strip():
        raise RunError("the query is empty; give the question to answer over the context")
    if not 0 < req.deadline_s <= MAX_DEADLINE_S:  # also refuses nan
        raise RunError(
            f"--deadline {req.deadline_s:g} is out of range; give the seconds the whole tree may take, "
            f"more than 0 and at most {MAX_DEADLINE_S:.0f} (one year)"
        )
    data, suffix = _context(req.context_path)
    return RunInput(req, data, suffix)


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
