"""``rlm model serve``: the scripted model over an OpenAI-compatible HTTP endpoint, so a set-up (durable-
rlm's workers, another RLM implementation, any OpenAI client) can be tried without a provider key."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Annotated

import typer

model_app = typer.Typer(no_args_is_help=True, help="The scripted model, served for testing a set-up.")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@model_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (the URL is printed).")] = 8411,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    latency_ms: Annotated[
        float, typer.Option(help="Latency of every reply whose model name sets no latency_ms.")
    ] = 0.0,
    policy: Annotated[
        str | None,
        typer.Option(help="Policy for model names that name none (e.g. an unchanged client's gpt-4o)."),
    ] = None,
) -> None:
    """Serve the scripted model on an OpenAI-compatible endpoint until interrupted.

    It answers POST /v1/chat/completions; the model name picks the policy (search, mapreduce,
    leaf?latency_ms=200, ...). Prints the base URL on stdout."""
    from orchestrator.logs import configure_logging

    if not 0 <= port <= 65535:
        typer.echo(f"error: --port {port} is not a TCP port; give 0-65535 (0: any free port)", err=True)
        raise typer.Exit(1)
    if latency_ms < 0:
        typer.echo(f"error: --latency-ms {latency_ms:g} must be >= 0", err=True)
        raise typer.Exit(1)
    configure_logging("info")
    from orchestrator.llm.openai_server import ScriptedServer, ServerConfig
    from orchestrator.llm.scripted_model import POLICIES

    if policy is not None and policy not in POLICIES:
        typer.echo(f"error: --policy {policy!r} is not a policy; use one of {', '.join(POLICIES)}", err=True)
        raise typer.Exit(1)
    try:
        server = ScriptedServer(ServerConfig(host=host, port=port, latency_ms=latency_ms, policy=policy))
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; try --port 0", err=True)
        raise typer.Exit(1) from None
    typer.echo(server.url)
    typer.echo(
        f"scripted model at {server.url}; e.g. RLM_MODEL=openai/search OPENAI_API_BASE={server.url} "
        "OPENAI_API_KEY=any rlm run ... (Ctrl-C stops it)",
        err=True,
    )
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
