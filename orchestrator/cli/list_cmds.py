"""``rlm runs``: the newest runs of the store, with their tenant, status, spend and query.

Imports the store only when the command runs (``rlm --help`` stays instant).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from orchestrator.cli.output import emit_json

MAX_LIMIT = 100_000  # more runs than a terminal or a script reads at once


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_cmd)


def runs_cmd(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's runs.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status (running, completed, failed, paused, ...).")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs started within this long (90s, 10m, 2h, 30d, 2w).")
    ] = None,
    limit: Annotated[int, typer.Option(help=f"At most this many runs (1 to {MAX_LIMIT}).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list instead of text.")] = False,
) -> None:
    """List the newest runs: tenant, status, spend, start, wall time and query.

    Read from the store, newest first. `rlm status RUN`, `rlm tree RUN` and `rlm show RUN` go into one."""
    from orchestrator.cli.common import cli_errors, duration_s, open_store
    from orchestrator.runs import RunError, recent_runs
    from orchestrator.settings import load_settings

    with cli_errors():
        if not 1 <= limit <= MAX_LIMIT:  # checked here: past SQL's integers the store would overflow
            raise RunError(f"--limit {limit} must be from 1 to {MAX_LIMIT}")
        after = None if since is None else datetime.now(UTC) - timedelta(seconds=duration_s(since, "--since"))
        engine, sessions = open_store(load_settings())
        try:
            rows = recent_runs(sessions, tenant=tenant, status=status, since=after, limit=limit)
        finally:
            engine.dispose()
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no runs match", err=True)
        return
    from orchestrator.store import format_usd

    table = [("RUN", "TENANT", "STATUS", "SPENT", "STARTED (UTC)", "WALL", "QUERY")]
    for row in rows:
        wall = "-" if row.wall_s is None else f"{row.wall_s:.1f} s"
        started = row.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        query = row.query_preview or ""
        table.append((row.run_id, row.tenant, row.status, f"${format_usd(row.cost)}", started, wall, query))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]
        )
