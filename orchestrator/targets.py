"""Which Temporal server a command talks to.

``temporal_target``: ``TEMPORAL_ADDRESS`` when set, else the server of the ``rlm dev`` serving the data
directory, else an embedded dev server (started here, stopped on exit). ``shared_target``: the same for
commands that need a server outliving them (none is started). Connecting is ``connection.connect``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from orchestrator.connection import TemporalTarget, cluster_target
from orchestrator.devlock import DataDirBusy, Holder, probe
from orchestrator.devstack import DevServer, DevServerConfig
from orchestrator.settings import Settings


@contextlib.contextmanager
def temporal_target(
    settings: Settings,
    *,
    ui: bool = True,
    shared: bool = False,
    while_booting: Callable[[], object] | None = None,
) -> Iterator[TemporalTarget]:
    """``TEMPORAL_ADDRESS``; else the server of the ``rlm dev`` serving the data directory; else an
    embedded dev server, stopped on exit (``shared``: `rlm dev`'s own, which never uses another's).
    ``while_booting`` runs while an embedded server starts (``DevServer.start``), and only then.

    ``DataDirBusy`` when another process serves the data directory with a server it does not share."""
    if settings.temporal_address:
        yield cluster_target(settings)
        return
    config = DevServerConfig(
        data_dir=settings.data_dir / "temporal", namespace=settings.temporal_namespace, ui=ui, shared=shared
    )
    server = DevServer(config)
    holder: Holder | None = None
    try:
        server.start(while_booting)
    except DataDirBusy as busy:
        if shared or busy.holder is None or not busy.holder.shared:
            raise
        holder = busy.holder
    if holder is not None:
        yield _dev_target(settings, holder)
        return
    try:
        yield TemporalTarget(server.address, settings.temporal_namespace, server.ui_url)
    finally:
        # `rlm dev` stops its server gracefully; a command that started one for itself kills it (see
        # DevServer.stop: nothing is lost, and the user waits for this command's exit).
        server.stop(grace_s=DevServer.STOP_GRACE_S if shared else 0.0)


def shared_target(settings: Settings) -> TemporalTarget | None:
    """``TEMPORAL_ADDRESS``, else the server of the ``rlm dev`` serving the data directory, else None."""
    if settings.temporal_address:
        return cluster_target(settings)
    holder = dev_holder(settings)
    return None if holder is None else _dev_target(settings, holder)


def dev_holder(settings: Settings) -> Holder | None:
    """The ``rlm dev`` serving the data directory, if one runs (waiting for one that is starting)."""
    holder = probe(settings.data_dir / "temporal", DevServerConfig.start_timeout_s)
    return holder if holder is not None and holder.shared else None


def _dev_target(settings: Settings, holder: Holder) -> TemporalTarget:
    print(f"using the rlm dev server at {holder.address} (data dir {settings.data_dir})", file=sys.stderr)
    return TemporalTarget(holder.address, settings.temporal_namespace, holder.ui_url)
