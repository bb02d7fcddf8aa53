"""``rlm report RUN -o FILE.html``: the run as one self-contained HTML page (tree and transcripts).

Reads the store only (no Temporal), so it works for running, ended and resumed runs alike. The page is
written to a temporary file beside FILE and renamed over it, so FILE is never left half written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import RunIdArg


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    run_id: RunIdArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")],
    full: Annotated[
        bool, typer.Option("--full", help="Embed every text whole instead of cutting long ones.")
    ] = False,
    tenant: Annotated[
        str | None, typer.Option(help="Refuse the run unless it belongs to this tenant.")
    ] = None,
) -> None:
    """Write the run's recursion tree and every node's transcript as one HTML file that opens offline.

    Nodes show their status, cost and duration; selecting one shows its transcript as `rlm show` does."""
    # Imported here: the store and its dependencies load slowly, which `rlm --help` must not pay for.
    from orchestrator.cli.common import cli_errors, open_store
    from orchestrator.report.build import build_report, check_output, write_report
    from orchestrator.settings import load_settings

    with cli_errors():
        target = check_output(output)
        settings = load_settings()
        engine, sessions = open_store(settings)
        try:
            page = build_report(sessions, run_id, tenant=tenant, full=full)
        finally:
            engine.dispose()
        write_report(target, page.html)
    typer.echo(
        f"wrote {target} ({page.nodes} nodes, {len(page.html.encode()) // 1024} KiB"
        + ("" if full else f"; texts over {page.cut_chars:,} characters cut, --full keeps them")
        + ")",
        err=True,
    )
