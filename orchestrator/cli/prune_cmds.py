"""``rlm prune``: remove what finished runs no longer need (steps, snapshots, contexts, unused blobs).

Runs' summaries, nodes and ledger entries stay, so `rlm status`, `rlm tree` and spend reports are
unchanged. Imports the store only when the command runs (``rlm --help`` stays instant).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("prune")(prune_cmd)


def prune_cmd(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Prune runs that ended more than this long ago (90s, 10m, 2h, 30d, 2w)."
        ),
    ],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's runs.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would go; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object on stdout.")] = False,
) -> None:
    """Delete the steps, snapshots, contexts and unused blobs of runs that ended long ago.

    Never touches a running or paused run. What a pruned run keeps: its status, answer, nodes, spend
    and ledger entries. A pruned run cannot be restarted."""
    from orchestrator.cli.common import cli_errors, duration_s, open_store
    from orchestrator.retention import prune
    from orchestrator.settings import load_settings

    with cli_errors():
        seconds = duration_s(older_than, "--older-than")
        engine, sessions = open_store(load_settings())
        try:
            report = prune(sessions, older_than_s=seconds, tenant=tenant, dry_run=dry_run)
        finally:
            engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_json()))
    else:
        typer.echo(report.line())
