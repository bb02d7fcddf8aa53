"""A worker's lease in the store, and its sweep of dead workers' sandbox containers.

A worker writes its lease before it polls (so before any of its containers exists), renews it in the
background and deletes it when it stops. Its containers carry ``worker=<id>`` and ``store=<scope>``.
Every live worker sweeps the Docker engine it uses: at start (in the background, never ahead of the
first cell) and then periodically, it removes the containers of its store whose worker holds no
live lease, running or exited. Lease length, renewal and sweep follow the heartbeat timeout: a
worker silent that long has lost its cells to other workers, and its containers to their sweeps.

Store and Docker calls run in daemon threads of their own, not ``asyncio.to_thread``: the default
executor is joined when ``asyncio.run`` ends, so a call stuck there would keep a stopping worker alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import structlog
from sqlalchemy.orm import Session, sessionmaker

import sandbox
from orchestrator.store import drop_lease, live_workers, purge_leases, renew_lease
from orchestrator.store.models import utcnow

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Worker containers without a store label (workers of versions before leases) go once this old.
LEGACY_OLDER_THAN_S = 3600.0
# Expired leases stay this long, so an operator can see which workers died recently.
KEEP_EXPIRED = timedelta(hours=1)


@dataclass(frozen=True)
class LeaseTiming:
    """``ttl_s``: a lease not renewed for this long is dead. Renewed three times per ttl."""

    ttl_s: float

    @property
    def renew_every_s(self) -> float:
        return max(0.25, self.ttl_s / 3)

    @property
    def sweep_every_s(self) -> float:
        return 2 * self.ttl_s


async def in_thread(fn: Callable[[], T], timeout_s: float | None = None) -> T:
    """``fn()`` in a new daemon thread; a timeout abandons the thread (it never holds up an exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task
            outcome: tuple[T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name="rlm-housekeeping", daemon=True).start()
    return await asyncio.wait_for(done, timeout_s)


class WorkerLease:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        worker_id: str,
        scope: str,
        timing: LeaseTiming,
        *,
        docker: bool,
    ) -> None:
        self.sessions = sessions
        self.worker_id = worker_id
        self.scope = scope
        self.timing = timing
        self.docker = docker
        self._host = socket.gethostname()
        self._renewed = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def labels(self) -> dict[str, str]:
        """Labels of every container this worker starts."""
        return {"worker": self.worker_id, "store": self.scope}

    def _renew(self) -> None:
        with self.sessions.begin() as session:
            renew_lease(session, self.worker_id, host=self._host, ttl_s=self.timing.ttl_s)

    def _live(self) -> set[str]:
        with self.sessions.begin() as session:
            purge_leases(session, expired_before=utcnow() - KEEP_EXPIRED)
            live = live_workers(session)
        # Never its own containers, even if its lease lapsed while the store was out of reach.
        return live | {self.worker_id}

    def sweep_once(self) -> int:
        """Remove the containers of this store's dead workers now; returns how many."""
        return sandbox.sweep(
            store=self.scope, live_workers=self._live, legacy_older_than_s=LEGACY_OLDER_THAN_S
        )

    def remove_own(self) -> int:
        return sandbox.reap(labels=self.labels)

    async def start(self) -> None:
        """Write the lease (before the worker polls), then renew and sweep in the background."""
        await in_thread(self._renew)
        self._renewed = time.monotonic()
        self._tasks = [asyncio.create_task(self._renew_loop(), name="rlm-lease-renew")]
        if self.docker:
            self._tasks.append(asyncio.create_task(self._sweep_loop(), name="rlm-sandbox-sweep"))
        log.info(
            "worker.lease_taken",
            worker_id=self.worker_id,
            store=self.scope,
            ttl_s=self.timing.ttl_s,
            sweep_every_s=self.timing.sweep_every_s,
        )

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timing.renew_every_s)
            try:
                await in_thread(self._renew, self.timing.ttl_s)
            except Exception as exc:  # the store may come back; the next renewal retries
                log.warning("worker.lease_renew_failed", worker_id=self.worker_id, error=str(exc)[:300])
                continue
            now = time.monotonic()
            if now - self._renewed > self.timing.ttl_s:
                # Other workers may have removed this worker's containers meanwhile (its cells then
                # report crashed runtimes and restore the last snapshot).
                log.warning(
                    "worker.lease_lapsed", worker_id=self.worker_id, silent_s=round(now - self._renewed, 1)
                )
            self._renewed = now

    async def _sweep_loop(self) -> None:
        while True:
            try:
                await in_thread(self.sweep_once, self.timing.sweep_every_s)
            except Exception as exc:  # the next sweep retries
                log.warning("sandbox.sweep_failed", worker_id=self.worker_id, error=str(exc)[:300])
            await asyncio.sleep(self.timing.sweep_every_s)

    async def close(self, timeout_s: float) -> None:
        """Stop renewing and sweeping, then delete the lease (within ``timeout_s``)."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []

        def drop() -> None:
            with self.sessions.begin() as session:
                drop_lease(session, self.worker_id)

        try:
            await in_thread(drop, timeout_s)
        except Exception as exc:  # the lease then expires by itself
            log.warning("worker.lease_drop_failed", worker_id=self.worker_id, error=str(exc)[:300])
