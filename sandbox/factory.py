"""``open_session``, ``check_ready``, ``reap`` and ``sweep``: the entry points that drive a backend."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Literal

import docker
import structlog

from . import docker_backend
from .api import SandboxError, SandboxLimits
from .pool import SandboxPool
from .process_backend import ProcessLauncher
from .session import Session

log = structlog.get_logger("sandbox")

Backend = Literal["docker", "process"]
# An engine that takes longer than this to answer a ping or an image lookup is not one to start serving on.
CHECK_TIMEOUT_S = 15


def _docker_client(timeout_s: int | None = None) -> docker.DockerClient:
    """A client of the engine ``DOCKER_HOST`` names, once it answered (each call bounded by ``timeout_s``,
    else the client's 60 s)."""
    try:
        client = docker.from_env() if timeout_s is None else docker.from_env(timeout=timeout_s)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SandboxError(
            f"cannot reach the Docker engine ({exc}); start it (ops/setup.sh does), or for trusted code in "
            "development only use the process backend (RLM_SANDBOX_BACKEND=process for a worker)"
        ) from None
    return client


def open_session(
    *,
    backend: Backend = "docker",
    context_path: Path | None,
    limits: SandboxLimits = SandboxLimits(),  # noqa: B008 - frozen, so a shared default is safe
    labels: Mapping[str, str] = {},
    image: str | None = None,
    pool: SandboxPool | None = None,
) -> Session:
    """Start a sandbox session; ``context_path`` (a file or directory) becomes ``context`` inside it.

    ``labels`` takes ``run``, ``node``, ``worker`` and ``store``; ``image`` defaults to the image built
    from the current runtime sources (``python -m sandbox.imagebuild`` builds it). With ``pool``, the
    session's first runtime is one of the pool's started containers when one fits (docker only).
    """
    if context_path is not None:
        context_path = Path(context_path).resolve()
        if not context_path.exists():
            raise ValueError(
                f"context_path {context_path} does not exist; pass an existing file or directory"
            )
    if backend not in ("docker", "process"):
        raise ValueError(f"unknown sandbox backend {backend!r}; use 'docker' (default) or 'process'")
    labels = docker_backend.normalise_labels(labels)
    if backend == "process":
        return Session(ProcessLauncher(context_path, limits), limits)
    if context_path is not None:
        docker_backend.check_readable_by_sandbox(context_path)
    if image is None:
        from .imagebuild import image_ref

        image = image_ref()
    launcher = docker_backend.DockerLauncher(_docker_client(), image, context_path, limits, labels)
    started = pool.take(image, limits, labels) if pool is not None else None
    return Session(launcher, limits, started=started, context=context_path)


def check_ready(image: str | None = None, timeout_s: int = CHECK_TIMEOUT_S) -> str:
    """The sandbox image (``image``, else the one built from the current runtime sources), once the Docker
    engine answered and holds it; else a ``SandboxError`` saying which is missing and how to fix it. An
    engine that does not answer within ``timeout_s`` counts as unreachable.

    A worker asks before it takes work: without the engine or the image every cell it picked up would
    fail and be retried until its run's deadline."""
    if image is None:
        from .imagebuild import image_ref

        image = image_ref()
    client = _docker_client(timeout_s)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"sandbox image {image} is missing on the Docker engine; build it with "
            "`python -m sandbox.imagebuild` (ops/setup.sh does)"
        ) from None
    except docker.errors.DockerException as exc:
        raise SandboxError(f"the Docker engine could not look up sandbox image {image}: {exc}") from None
    finally:
        client.close()
    return image


def reap(*, labels: Mapping[str, str] | None = None, older_than_s: float | None = None) -> int:
    """Remove leftover sandbox containers matching ``labels`` (all of them when None); returns the count.

    ``older_than_s`` spares containers younger than that.
    """
    client = _docker_client()
    try:
        count = docker_backend.reap(client, labels, older_than_s)
    finally:
        client.close()
    log.info("sandbox.reaped", count=count, labels=dict(labels or {}))
    return count


def sweep(
    *,
    store: str,
    live_workers: Callable[[], Collection[str]],
    legacy_older_than_s: float = 3600.0,
) -> int:
    """Remove the containers of dead workers of store ``store``: those whose ``worker`` label is not in
    ``live_workers()`` (asked after the containers are listed). Returns the count.

    Containers without a ``worker`` label, and those of other stores, are never touched; worker
    containers without a ``store`` label (older versions) go once older than ``legacy_older_than_s``.
    """
    client = _docker_client()
    try:
        count = docker_backend.sweep(client, store, live_workers, legacy_older_than_s)
    finally:
        client.close()
    if count:
        log.info("sandbox.swept", count=count, store=store)
    return count
