"""A few sandbox containers started ahead of need, so that a session's first cell never waits for one.

Each pooled container is an ordinary capped container (``DockerLauncher``: no network, memory, CPU and
pids caps, read-only root, no host file but its control socket) whose runtime has connected and waits
for its init message. ``open_session(pool=...)`` takes one, if one with the same image, caps and worker
labels is ready, and sends it the context over the control channel (``streaming``); otherwise it starts
a container as usual. A taken container serves that one session and goes with it: the pool never gets
it back. A background thread refills the pool; nothing on a cell's path waits for it.

Docker cannot add labels to a running container, and ``reap(labels={"run": ..., "node": ...})`` (a
finished node, ``rlm abort``) must still find it: a taken container is renamed after its run and node
(``docker_backend.claimed_name``), a name ``docker_backend.containers`` also matches. Pooled containers
carry the worker's ``worker`` and ``store`` labels from the start, so the worker's stop and other
workers' sweeps remove them like any other container of the worker.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
import docker.errors
import structlog

from . import channel, docker_backend
from .api import SandboxLimits
from .session import Started, accept

log = structlog.get_logger("sandbox")

# What a pooled container is created with; a session with other values starts its own container.
CONTAINER_LIMITS = ("memory_bytes", "cpus", "pids", "tmpfs_bytes", "log_bytes")
# After a failed start, the refill waits this long before the next attempt (the engine may be down).
RETRY_AFTER_S = 5.0
# A take means a node's first cell is starting, and its sub-calls usually follow at once. While a
# container is still ready, the refill waits this long after a take, so that a boot (the engine's CPU,
# and the Docker client's share of the worker's) does not compete with that work; an empty pool
# refills at once. Measured on 2 cores: a 100-leaf fan-out right after a take ran about 6% faster.
REFILL_DELAY_S = 3.0


@dataclass
class _Ready:
    started: Started
    container_id: str
    boot_ms: float


class SandboxPool:
    """Up to ``size`` started containers (0: none, ``take`` always answers None). ``labels`` are the
    worker's (``worker``, ``store``), never a run's. ``start`` begins filling, ``close`` removes them.
    ``refill=False`` fills the pool once and never again after a take: a one-shot worker's first cell
    gets a started container, and no container boots after it for a worker about to stop."""

    def __init__(
        self,
        size: int,
        *,
        limits: SandboxLimits = SandboxLimits(),  # noqa: B008 - frozen
        labels: Mapping[str, str] = {},
        image: str | None = None,
        refill_delay_s: float = REFILL_DELAY_S,
        refill: bool = True,
    ) -> None:
        if size < 0:
            raise ValueError(f"sandbox pool size must be 0 or more, got {size}")
        normalised = docker_backend.normalise_labels(labels)
        if any(key.endswith((".run", ".node")) for key in normalised):
            raise ValueError("a sandbox pool serves many runs: give it worker/store labels, not run/node")
        self.size = size
        self.limits = limits
        self.labels = normalised
        self.image = image
        self.refill_delay_s = refill_delay_s
        self.refill = refill
        self._ready: deque[_Ready] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._client: docker.DockerClient | None = None
        self._pooled = 0  # containers that became ready, taken or not
        self._last_take = -math.inf

    # ---- filling ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start filling in the background; idempotent. Call it once the worker's lease exists."""
        with self._changed:
            if self.size == 0 or self._thread is not None or self._closed:
                return
            if self.image is None:
                from .imagebuild import image_ref

                self.image = image_ref()
            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                # Sessions then start their own containers and say what is wrong with the engine.
                log.warning("sandbox.pool_unavailable", error=str(exc)[:300])
                return
            self._thread = threading.Thread(
                target=self._fill,
                args=(self._client, self.image),
                name="sandbox-pool",
                daemon=True,
            )
            self._thread.start()

    def _fill(self, client: docker.DockerClient, image: str) -> None:
        while True:
            with self._changed:
                while not self._closed and (len(self._ready) >= self.size or self._filled_for_good()):
                    self._changed.wait()
                calm = self._last_take + self.refill_delay_s - time.monotonic()
                if self._ready and calm > 0:
                    self._changed.wait_for(lambda: self._closed or not self._ready, calm)
                if self._closed:
                    return
            try:
                ready = self._boot(client, image)
            except Exception as exc:
                log.warning("sandbox.pool_start_failed", error=str(exc)[:300], retry_s=RETRY_AFTER_S)
                with self._changed:
                    self._changed.wait_for(lambda: self._closed, RETRY_AFTER_S)
                continue
            with self._changed:
                if not self._closed:
                    self._ready.append(ready)
                    self._pooled += 1
                    log.info("sandbox.pooled", runtime=ready.container_id[:12], ms=ready.boot_ms)
                    continue
            # Closed while this one was starting: it must not outlive the pool.
            self._discard(ready)

    def _filled_for_good(self) -> bool:
        return not self.refill and self._pooled >= self.size

    def _boot(self, client: docker.DockerClient, image: str) -> _Ready:
        began = time.monotonic()
        launcher = docker_backend.DockerLauncher(client, image, None, self.limits, self.labels)
        with channel.control_socket() as (listener, path):
            runtime = launcher.launch(path)
            try:
                timeout = self.limits.start_timeout_s
                conn = accept(listener, runtime, began + timeout, timeout)
            except BaseException:
                runtime.kill()
                raise
        return _Ready(Started(runtime, conn), runtime.ident, round((time.monotonic() - began) * 1000, 1))

    # ---- taking ----------------------------------------------------------------------------------
    def take(self, image: str, limits: SandboxLimits, labels: Mapping[str, str]) -> Started | None:
        """A started runtime for one session with these image, caps and labels, renamed after its run
        and node; None when none is ready (the caller starts its own). Never waits for a start."""
        normalised = docker_backend.normalise_labels(labels)
        if (
            image != self.image
            or any(getattr(limits, name) != getattr(self.limits, name) for name in CONTAINER_LIMITS)
            or any(normalised.get(key) != value for key, value in self.labels.items())
        ):
            return None
        while True:
            with self._changed:
                if self._closed or not self._ready:
                    return None
                ready = self._ready.popleft()
                self._last_take = time.monotonic()
                self._changed.notify_all()
            if self._claim(ready, normalised):
                return ready.started

    def _claim(self, ready: _Ready, labels: Mapping[str, str]) -> bool:
        # A runtime that says anything before its init has died (EOF): the next one may be fine.
        try:
            if channel.readable(ready.started.conn, 0):
                raise docker.errors.NotFound("the pooled runtime closed its channel")
            if self._client is not None:
                self._client.api.rename(ready.container_id, docker_backend.claimed_name(labels))
        except docker.errors.DockerException as exc:
            log.warning("sandbox.pool_discarded", runtime=ready.container_id[:12], error=str(exc)[:200])
            self._discard(ready)
            return False
        return True

    # ---- stopping --------------------------------------------------------------------------------
    @staticmethod
    def _discard(ready: _Ready) -> None:
        with contextlib.suppress(OSError):
            ready.started.conn.close()
        with contextlib.suppress(docker.errors.DockerException):
            ready.started.runtime.kill()

    def close(self) -> None:
        """Stop refilling and remove every container in the pool, waiting for one being started (at
        most its start timeout): no container of the pool outlives this call."""
        with self._changed:
            self._closed = True
            ready = list(self._ready)
            self._ready.clear()
            self._changed.notify_all()
        if ready:
            with ThreadPoolExecutor(
                min(docker_backend.REMOVE_THREADS, len(ready)), thread_name_prefix="sandbox-pool-stop"
            ) as removers:
                list(removers.map(self._discard, ready))
        if self._thread is not None:
            # A container starting now is removed by the refill thread once its start returns.
            self._thread.join(self.limits.start_timeout_s)
        if self._client is not None:
            self._client.close()

    def ready_count(self) -> int:
        with self._changed:
            return len(self._ready)
