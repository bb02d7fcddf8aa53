"""The ``rlm`` command line: one Typer app; each area registers its own sub-commands here."""

from __future__ import annotations

from importlib.metadata import version as dist_version

import typer

from orchestrator.cli import control_cmds, job_cmds, run_cmds, server_cmds
from orchestrator.cli.output import PipeSafeGroup
from orchestrator.cli.store_cmds import db_app, price_app, tenant_app
from orchestrator.logs import LogLevelError, configure_logging

app = typer.Typer(
    cls=PipeSafeGroup,
    no_args_is_help=True,
    add_completion=False,
    help="durable-rlm: durable Recursive Language Models.",
)


@app.callback()
def _root() -> None:
    """durable-rlm: durable Recursive Language Models."""
    # Every command logs to stderr (stdout carries answers and --json); worker and dev raise the level.
    try:
        configure_logging("warning")
    except LogLevelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(dist_version("durable-rlm"))


app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(price_app, name="price")
run_cmds.register(app)
control_cmds.register(app)
job_cmds.register(app)
server_cmds.register(app)


def main() -> None:
    app()
