"""The ``docker`` backend: each runtime is one capped container; ``reap`` and ``sweep`` remove leftovers.

The container gets: memory == memory+swap, a CPU quota, a pids limit, no network, a read-only root with a
size-capped tmpfs at /tmp, uid 10001, no capabilities, no-new-privileges, a capped json-file log, an init
process that reaps orphans, and exactly two bind mounts: the context (read-only) and the control socket
(a single socket file, so nothing can be written to the host through it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import LogConfig, Mount

from .api import CellStatus, SandboxError, SandboxLimits
from .bootstrap import runtime_command
from .cell import ExitReason

MARKER = "durable-rlm"
MARKER_VALUE = "sandbox"
LABEL_KEYS = ("run", "node", "worker", "store")
CREATED_AT = f"{MARKER}.created-at"
WORKER = f"{MARKER}.worker"
STORE = f"{MARKER}.store"
# How the name of a container claimed by a run after it started begins (``claimed_name``).
CLAIMED_PREFIX = "durable-rlm"
# Removing a container takes 0.1-0.3 s of engine time; a worker's stop removes up to its whole cache.
REMOVE_THREADS = 8
SANDBOX_USER = "10001:10001"
RUNTIME_PARENT_IN_IMAGE = "/opt"
RUNTIME_PACKAGE_IN_IMAGE = "rlm"
SOCKET_IN_CONTAINER = "/run/rlm-control.sock"
CONTEXT_IN_CONTAINER = "/context"


def normalise_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Accept ``run``/``node``/``worker``/``store`` (or their ``durable-rlm.`` forms); else an error."""
    result: dict[str, str] = {}
    for key, value in labels.items():
        short = key.removeprefix(f"{MARKER}.")
        if short not in LABEL_KEYS:
            raise ValueError(
                f"unknown sandbox label {key!r}; use {', '.join(LABEL_KEYS)} (e.g. labels={{'run': run_id}})"
            )
        if not isinstance(value, str):
            raise ValueError(f"sandbox label {key!r} must be a string, got {type(value).__name__}")
        result[f"{MARKER}.{short}"] = value
    return result


def check_readable_by_sandbox(context_path: Path) -> None:
    """The sandbox user is neither the owner nor in the group of host files: "other" bits must allow it."""
    paths = [context_path]
    if context_path.is_dir():
        for root, dirs, files in os.walk(context_path):
            paths.extend(Path(root) / name for name in [*dirs, *files])
    for path in paths:
        mode = path.stat().st_mode
        needed = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
        if mode & needed != needed:
            raise ValueError(
                f"context file {path} is not readable by the sandbox user (uid 10001); "
                f"make it world-readable, e.g. chmod -R o+rX {context_path}"
            )


def context_target(context_path: Path | None) -> str | None:
    """Where the context appears inside the container (a file keeps its name, hence its suffix)."""
    if context_path is None:
        return None
    if context_path.is_dir():
        return CONTEXT_IN_CONTAINER
    return f"{CONTEXT_IN_CONTAINER}/{context_path.name}"


class DockerRuntime:
    def __init__(self, container: Container) -> None:
        self._container = container
        self.ident: str = container.id or ""

    def alive(self) -> bool:
        try:
            self._container.reload()
        except docker.errors.NotFound:
            self._container.attrs = {}
            return False
        return bool(self._container.attrs["State"]["Running"])

    def exit_reason(self, wait_s: float) -> tuple[ExitReason, str]:
        deadline = time.monotonic() + wait_s
        while self.alive():
            if time.monotonic() > deadline:
                return CellStatus.CRASHED, "the runtime closed the control channel but kept running"
            time.sleep(0.05)
        if not self._container.attrs:
            return CellStatus.CRASHED, "container was removed"
        state = self._container.attrs["State"]
        if state.get("OOMKilled"):
            return CellStatus.OOM, "killed by the out-of-memory killer"
        return CellStatus.CRASHED, f"container exited with code {state.get('ExitCode')}"

    def kill(self) -> None:
        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # "removal already in progress" is fine; anything else leaves it to reap().
            if exc.status_code != 409:
                raise


class DockerLauncher:
    backend = "docker"

    def __init__(
        self,
        client: docker.DockerClient,
        image: str,
        context_path: Path | None,
        limits: SandboxLimits,
        labels: Mapping[str, str],
    ) -> None:
        self._client = client
        self._image = image
        self._context = context_path
        self._limits = limits
        self._labels = {MARKER: MARKER_VALUE, **normalise_labels(labels)}

    def init_message(self) -> dict[str, Any]:
        return {"context": context_target(self._context), "rlimits": {"RLIMIT_CORE": 0}}

    def close(self) -> None:
        self._client.close()

    def launch(self, socket_path: Path) -> DockerRuntime:
        limits = self._limits
        mounts = [Mount(target=SOCKET_IN_CONTAINER, source=str(socket_path), type="bind", read_only=False)]
        target = context_target(self._context)
        if target is not None:
            mounts.append(Mount(target=target, source=str(self._context), type="bind", read_only=True))
        labels = {**self._labels, CREATED_AT: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        try:
            container = self._client.containers.create(
                self._image,
                command=runtime_command(
                    "python3", RUNTIME_PARENT_IN_IMAGE, RUNTIME_PACKAGE_IN_IMAGE, SOCKET_IN_CONTAINER
                ),
                user=SANDBOX_USER,
                working_dir="/tmp",  # noqa: S108 - the container's private tmpfs
                environment={"HOME": "/tmp", "LANG": "C.UTF-8"},  # noqa: S108
                network_mode="none",
                mem_limit=limits.memory_bytes,
                memswap_limit=limits.memory_bytes,
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids,
                read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,noexec,size={limits.tmpfs_bytes}"},  # noqa: S108
                shm_size=limits.tmpfs_bytes,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                log_config=LogConfig(
                    type="json-file", config={"max-size": str(limits.log_bytes), "max-file": "1"}
                ),
                mounts=mounts,
                labels=labels,
                init=True,
                detach=True,
            )
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"sandbox image {self._image} is missing; build it with `python -m sandbox.imagebuild`"
            ) from None
        except docker.errors.DockerException as exc:
            raise SandboxError(f"creating the sandbox container failed: {exc}") from exc
        runtime = DockerRuntime(container)
        try:
            container.start()
        except docker.errors.DockerException as exc:
            runtime.kill()
            raise SandboxError(f"starting the sandbox container failed: {exc}") from exc
        return runtime


def _listed(client: docker.DockerClient, filters: dict[str, str | list[str] | bool]) -> list[Container]:
    """The sandbox containers matching ``filters``, in one call to the engine: ``sparse`` skips the
    inspect per container a full listing makes (seconds when a shared engine holds many), and a
    container removed meanwhile (by another worker's sweep) cannot fail the listing."""
    found: list[Container] = client.containers.list(all=True, filters=filters, sparse=True)
    return found


def _labels(container: Container) -> dict[str, str]:
    """A listed container's labels (a sparse listing has them at the top, not under ``Config``)."""
    labels: dict[str, str] = container.attrs.get("Labels") or {}
    return labels


def _created(container: Container) -> dt.datetime | None:
    stamp = _labels(container).get(CREATED_AT)
    try:
        return dt.datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


def _remove_one(container: Container) -> bool:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # removal already in progress (another worker's sweep)
            return False
        raise
    return True


def _remove(containers: Iterable[Container]) -> int:
    todo = list(containers)
    if len(todo) <= 1:
        return sum(_remove_one(c) for c in todo)
    with ThreadPoolExecutor(min(REMOVE_THREADS, len(todo)), thread_name_prefix="sandbox-remove") as pool:
        return sum(pool.map(_remove_one, todo))


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def _name_pattern(labels: Mapping[str, str]) -> str | None:
    """The part of a claimed container's name that the run and node of ``labels`` (normalised) fix;
    None when they give neither. Hashed: ids may hold characters a container name may not, and a
    lossy spelling could make one run's reap match another run's containers."""
    run, node = labels.get(f"{MARKER}.run"), labels.get(f"{MARKER}.node")
    if run is None and node is None:
        return None
    return f"-r{_hash(run) if run is not None else '[0-9a-f]*'}" + (f"-n{_hash(node)}" if node else "") + "-"


def claimed_name(labels: Mapping[str, str]) -> str:
    """A unique name for a container started before its run and node were known (a pooled one):
    Docker cannot add labels to a running container, so ``containers`` finds it by this name."""
    wanted = normalise_labels(labels)
    if f"{MARKER}.run" not in wanted or f"{MARKER}.node" not in wanted:
        raise ValueError("a claimed container's name needs its run and node")
    return f"{CLAIMED_PREFIX}{_name_pattern(wanted)}{uuid.uuid4().hex[:8]}"


def containers(client: docker.DockerClient, labels: Mapping[str, str] | None = None) -> list[Container]:
    """The sandbox containers (running or not) matching ``labels``: by label, and, for a run or node,
    also the claimed containers whose name carries them (and which have the other labels)."""
    wanted = {MARKER: MARKER_VALUE, **normalise_labels(labels or {})}
    found = _listed(client, {"label": [f"{key}={value}" for key, value in wanted.items()]})
    pattern = _name_pattern(wanted)
    if pattern is not None:
        rest = [f"{k}={v}" for k, v in wanted.items() if k not in (f"{MARKER}.run", f"{MARKER}.node")]
        seen = {c.id for c in found}
        named = _listed(client, {"label": rest, "name": f"^/{CLAIMED_PREFIX}{pattern}"})
        found += [c for c in named if c.id not in seen]
    return found


def reap(
    client: docker.DockerClient,
    labels: Mapping[str, str] | None = None,
    older_than_s: float | None = None,
) -> int:
    """Remove sandbox containers (running or not) matching ``labels`` (``containers``); returns how
    many were removed."""
    now = dt.datetime.now(dt.UTC)
    doomed: list[Container] = []
    for container in containers(client, labels):
        created = _created(container)
        if (
            older_than_s is not None
            and created is not None
            and (now - created).total_seconds() < older_than_s
        ):
            continue
        doomed.append(container)
    return _remove(doomed)


def sweep(
    client: docker.DockerClient,
    store: str,
    live_workers: Callable[[], Collection[str]],
    legacy_older_than_s: float,
) -> int:
    """Remove the containers of store ``store`` whose worker is not live; returns how many were removed.

    Containers are listed before ``live_workers()`` is asked: a worker records itself as live before it
    starts containers, so a container listed here whose worker is missing from the answer is an orphan.
    Containers of other stores, and those no worker started, are left alone. Containers a worker of an
    older version started (no store label) are removed once older than ``legacy_older_than_s``, the rule
    such workers applied at every start (they carry no lease to check).
    """
    filters: dict[str, str | list[str] | bool] = {"label": [f"{MARKER}={MARKER_VALUE}", WORKER]}
    now = dt.datetime.now(dt.UTC)
    ours: list[Container] = []
    doomed: list[Container] = []
    for container in _listed(client, filters):
        scope = _labels(container).get(STORE)
        if scope == store:
            ours.append(container)
        elif scope is None:
            created = _created(container)
            if created is None or (now - created).total_seconds() >= legacy_older_than_s:
                doomed.append(container)
    if ours:
        live = set(live_workers())
        doomed.extend(c for c in ours if _labels(c).get(WORKER) not in live)
    return _remove(doomed)
