"""The ``rlm`` command line: one Typer app; each area registers its own sub-commands here.

Importing this package must stay cheap (``rlm --help`` and ``rlm version`` in well under a second): the
``*_cmds`` modules import only the standard library, typer and each other at their top, and the engine
(store, Temporal, litellm, Docker) inside the commands that need it.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from orchestrator.cli import (
    control_cmds,
    job_cmds,
    list_cmds,
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

_APP: dict[str, Any] = {
    "cls": PipeSafeGroup,
    "no_args_is_help": True,
    "add_completion": False,
    "help": "durable-rlm: durable Recursive Language Models.",
}
app = typer.Typer(**_APP)


@app.callback()
def _root(ctx: typer.Context) -> None:
    """durable-rlm: durable Recursive Language Models."""
    if ctx.invoked_subcommand == "version":
        return  # it logs nothing, and structlog's import would be a fifth of its time
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
list_cmds.register(app)
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
    args = sys.argv[1:]
    if args[:1] == ["run"] and not any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        from orchestrator.cli.quick_args import parse

        # `rlm run` with plain arguments: converted here, then run through an app that holds it alone,
        # so that Typer's root callback, exit codes and error handling stay those of `app`. No --help
        # options there (`--help` is left to `app`): Typer converts even a help flag with Pydantic.
        kwargs = parse(run_cmds.run, args[1:])
        if kwargs is not None:
            quick = typer.Typer(**_APP)
            quick.callback(add_help_option=False)(_root)
            quick.command("run", add_help_option=False)(lambda: run_cmds.run(**kwargs))
            quick(args=["run"])
            return
    app()
