"""``rlm worker``, ``rlm dev`` and ``rlm temporal setup``: serving a Temporal server's task queue, the
embedded server for a data directory (shared with the other rlm commands of that directory), and
preparing a cluster."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from orchestrator.cli.common import (
    exit_now,
    first_line,
    load_worker_modules,
    open_store,
    shared_temporal,
    temporal_errors,
)

temporal_app = typer.Typer(no_args_is_help=True, help="Prepare a Temporal cluster for durable-rlm.")


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("dev")(dev)
    app.add_typer(temporal_app, name="temporal")


# --- rlm worker / dev --------------------------------------------------------------------------


def worker() -> None:
    """Run a worker until SIGINT or SIGTERM.

    It serves TEMPORAL_ADDRESS (any cluster), else the running `rlm dev` of the data directory."""
    import asyncio

    from orchestrator.logs import configure_logging, results_stdout
    from orchestrator.runs import RunError
    from orchestrator.settings import load_settings
    from orchestrator.targets import shared_target

    with temporal_errors():
        configure_logging("info")
        settings = load_settings()
        target = shared_target(settings)
        if target is None:
            raise RunError(
                "set TEMPORAL_ADDRESS to the cluster to serve, or use `rlm dev` for a local server"
            )
        engine, _ = open_store(settings)
        engine.dispose()
        load_worker_modules()  # litellm: only commands that run a worker
        from orchestrator.worker import serve

        with results_stdout():  # a worker has no result: whatever a library prints goes to stderr
            asyncio.run(serve(settings, target))
    exit_now(0)


def dev() -> None:
    """Run a local Temporal server, its Web UI and a worker in the foreground.

    The other rlm commands of the same data directory use this server."""
    import asyncio

    from orchestrator.logs import configure_logging, results_stdout
    from orchestrator.settings import load_settings
    from orchestrator.targets import temporal_target

    with temporal_errors():
        configure_logging("info")
        settings = load_settings()
        engine, _ = open_store(settings)
        engine.dispose()
        with temporal_target(settings, shared=True, while_booting=load_worker_modules) as target:
            typer.echo(f"Temporal dev server at {target.address}; Web UI at {target.ui_url}", err=True)
            typer.echo(
                f"rlm commands with RLM_DATA_DIR={settings.data_dir} use it; from elsewhere: "
                f"export TEMPORAL_ADDRESS={target.address}",
                err=True,
            )
            from orchestrator.warmcli.server import warm_cli
            from orchestrator.worker import serve  # loaded while the server booted

            # The data directory's short-lived commands run in processes forked from a warm one.
            with warm_cli(settings.data_dir) as stop_warm_cli, results_stdout():  # as for `rlm worker`
                asyncio.run(serve(settings, target, on_stop=stop_warm_cli))
    exit_now(0)


# --- rlm temporal setup ------------------------------------------------------------------------


@temporal_app.command("setup")
def temporal_setup(
    wait_s: Annotated[
        float,
        typer.Option("--wait", help="Retry connecting for this many seconds (a server still starting)."),
    ] = 0.0,
) -> None:
    """Register durable-rlm's custom search attributes on TEMPORAL_ADDRESS's namespace (idempotent)."""
    import asyncio

    from orchestrator.connection import TemporalConnectError, connect
    from orchestrator.runs import RunError
    from orchestrator.schedules import setup_search_attributes
    from orchestrator.settings import load_settings

    with temporal_errors():
        settings = load_settings()
        target = shared_temporal(settings)

        async def go() -> tuple[list[str], list[str]]:
            end = time.monotonic() + wait_s
            while True:
                try:
                    client = await connect(target)
                    break
                except (RuntimeError, TemporalConnectError) as exc:
                    if time.monotonic() >= end:
                        raise RunError(
                            f"{first_line(exc)} (--wait SECONDS retries while a server starts)"
                        ) from None
                    await asyncio.sleep(1.0)
            result = await setup_search_attributes(client, target.namespace)
            return result.added, result.present

        added, present = asyncio.run(go())
    typer.echo(
        f"namespace {settings.temporal_namespace}: added {', '.join(added) or 'none'}; "
        f"already registered {', '.join(present) or 'none'}"
    )
    exit_now(0)
