"""The ``rlm`` command line: one Typer app; each area registers its own sub-commands here.

Importing this package must stay cheap (``rlm --help`` and ``rlm version`` in well under a second): the
``*_cmds`` modules import only the standard library, typer and each other at their top, and the engine
(store, Temporal, litellm, Docker) inside the commands that need it.
"""

from __future__ import annotations

import typer

from orchestrator.cli import (
    control_cmds,
    job_cmds,
    model_cmds,
    prune_cmds,
    report_cmds,
    run_cmds,
    server_cmds,
    session_cmds,
    show_cmds,
    store_cmds,
    watch_cmds,
)
from orchestrator.cli.output import PipeSafeGroup

app = typer.Typer(
    cls=PipeSafeGroup,
    no_args_is_help=True,
    add_completion=False,
    help="durable-rlm: durable Recursive Language Models.",
)


@app.callback()
def _root() -> None:
    """durable-rlm: durable Recursive Language Models."""
    from orchestrator.logs import LogLevelError, configure_logging

    # Every command logs to stderr (stdout carries answers and --json); worker and dev raise the level.
    try:
        configure_logging("warning")
    except LogLevelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the installed version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("durable-rlm"))


app.add_typer(store_cmds.db_app, name="db")
app.add_typer(store_cmds.tenant_app, name="tenant")
app.add_typer(store_cmds.price_app, name="price")
run_cmds.register(app)
session_cmds.register(app)
control_cmds.register(app)
job_cmds.register(app)
server_cmds.register(app)
prune_cmds.register(app)
show_cmds.register(app)
report_cmds.register(app)
model_cmds.register(app)
watch_cmds.register(app)


def main() -> None:
    app()
