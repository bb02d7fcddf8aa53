"""The ``rlm`` command line: one Typer app; each area registers its own sub-commands here."""

from __future__ import annotations

from importlib.metadata import version as dist_version

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="durable-rlm: durable Recursive Language Models."
)


@app.callback()
def _root() -> None:
    """durable-rlm: durable Recursive Language Models."""


@app.command()
def version() -> None:
    """Print the installed version."""
    typer.echo(dist_version("durable-rlm"))


def main() -> None:
    app()
