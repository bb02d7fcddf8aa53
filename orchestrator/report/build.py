"""Gather a run from the store into the report's data and render the page; write it without leaving a
half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from orchestrator.errors import RlmError
from orchestrator.report.document import render_html, report_data
from orchestrator.runs.inspect import run_summary, run_tree
from orchestrator.store.report import run_tenant
from orchestrator.transcripts.clips import FULL, Cut
from orchestrator.transcripts.load import load_transcript

# The tree row's answer preview: enough to tell leaves apart, short enough for 1,000 rows.
PREVIEW_CHARS = 80


class ReportError(RlmError):
    """Bad input to ``rlm report``: the message says what and how to fix it."""


@dataclass(frozen=True)
class Report:
    html: str
    nodes: int
    cut_chars: int | None  # None: --full


def check_output(path: Path) -> Path:
    """Refuse an output path that cannot be written before any work is done."""
    target = path.expanduser()
    if target.is_dir():
        raise ReportError(f"-o {path} is a directory; give a file name such as {target / 'report.html'}")
    parent = target.parent
    if not parent.is_dir():
        raise ReportError(
            f"cannot write {path}: directory {parent} does not exist; create it or choose another -o"
        )
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ReportError(f"cannot write {path}: permission denied; choose a writable path with -o")
    return target


def write_report(path: Path, text: str) -> None:
    """Write through a temporary file in the same directory, renamed over ``path`` once complete."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ReportError(
            f"cannot write {path}: {exc.strerror or exc}; choose a writable path with -o"
        ) from None


def build_report(sessions: sessionmaker[Session], run_id: str, *, tenant: str | None, full: bool) -> Report:
    """The page of ``run_id``: its tree, and each node's transcript cut by ``Cut`` unless ``full``."""
    cut = FULL if full else Cut()
    with sessions() as session:
        owner = run_tenant(session, run_id)
    if tenant is not None and owner != tenant:
        raise ReportError(
            f"run {run_id!r} does not belong to tenant {tenant!r}; check the run id or --tenant"
        )
    summary = run_summary(sessions, run_id)
    rows = run_tree(sessions, run_id, preview_chars=PREVIEW_CHARS)
    transcripts = {row.node_id: load_transcript(sessions, row.node_id, cut=cut) for row in rows}
    data = report_data(summary, owner, rows, transcripts, cut, datetime.now(UTC))
    return Report(html=render_html(f"rlm report: {run_id}", data), nodes=len(rows), cut_chars=cut.limit)
