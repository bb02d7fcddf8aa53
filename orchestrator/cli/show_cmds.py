"""``rlm show NODE`` (a node's transcript) and ``rlm export RUN --format rlm-jsonl`` (the root's trajectory
in the reference implementation's log format).

Both read the store only (no Temporal): they work while a run is going, after it ended, and for resumed
runs. The store and its dependencies are imported inside the commands (``rlm --help`` stays instant).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import RunIdArg, target_param

FORMATS = ("rlm-jsonl",)

TenantOption = Annotated[
    str | None, typer.Option(help="Refuse a node or run unless it belongs to this tenant's runs.")
]


def register(app: typer.Typer) -> None:
    app.command("show")(show)
    app.command("export")(export)


def show(
    node: Annotated[
        str, typer.Argument(help="A node id (run/0.3), or a run id for its root.", callback=target_param)
    ],
    iteration: Annotated[int | None, typer.Option(help="Only this iteration (1-based).")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Print every text whole instead of cutting it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The transcript as one JSON document.")] = False,
    tenant: TenantOption = None,
) -> None:
    """Print a node's transcript: replies, cells, sub-calls, the answer and why it ended.

    In full: its query and context, each iteration's reply, cells (code, output, errors, sub-calls with
    their prompts and answers), the answer, spend and tokens, and why it ended."""
    from orchestrator.cli.common import cli_errors, fail, open_store
    from orchestrator.settings import load_settings
    from orchestrator.transcripts.clips import FULL, Cut
    from orchestrator.transcripts.load import load_transcript
    from orchestrator.transcripts.render import render

    with cli_errors():
        engine, sessions = open_store(load_settings())
        try:
            transcript = load_transcript(sessions, node, cut=FULL if full else Cut(), tenant=tenant)
        finally:
            engine.dispose()
    if iteration is not None:
        chosen = tuple(it for it in transcript.iterations if it.number == iteration)
        if not chosen:
            numbers = [it.number for it in transcript.iterations]
            have = f"iterations {numbers[0]} to {numbers[-1]}" if numbers else "no iterations yet"
            raise fail(f"--iteration {iteration}: node {transcript.node.node_id} has {have}")
        transcript = dataclasses.replace(transcript, iterations=chosen)
    if as_json:
        typer.echo(json.dumps(transcript.to_json()))
    else:
        typer.echo(render(transcript), nl=False)


def export(
    run: RunIdArg,
    fmt: Annotated[str, typer.Option("--format", help="Output format: rlm-jsonl.")] = "rlm-jsonl",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="The file to write (default: stdout).")
    ] = None,
    tenant: TenantOption = None,
) -> None:
    """Write the root's trajectory in the reference implementation's JSON-lines format.

    That is the format of the logger of rlms 0.1.3: a metadata line, then one line per iteration with
    its code blocks and their sub-calls. The reference's visualizer opens it."""
    from orchestrator.cli.common import cli_errors, fail, open_store
    from orchestrator.settings import load_settings
    from orchestrator.transcripts.rlm_jsonl import export_lines

    if fmt not in FORMATS:
        raise fail(f"unknown --format {fmt!r}; the one format is {', '.join(FORMATS)}")
    if output is not None:
        _check_writable(output)
    with cli_errors():
        engine, sessions = open_store(load_settings())
        try:
            lines = export_lines(sessions, run, tenant=tenant)
        finally:
            engine.dispose()
    text = "".join(line + "\n" for line in lines)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}; give a writable path with -o") from None


def _check_writable(path: Path) -> None:
    """Refuse an output path that cannot be written before any work is done."""
    from orchestrator.cli.common import fail

    if path.is_dir():
        raise fail(f"cannot write {path}: it is a directory; give a file path with -o")
    folder = path.parent
    if not folder.is_dir():
        raise fail(f"cannot write {path}: folder {folder} does not exist; create it or give another -o")
    target = path if path.exists() else folder
    if not os.access(target, os.W_OK):
        raise fail(f"cannot write {path}: permission denied; give a writable path with -o")
