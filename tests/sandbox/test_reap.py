"""``sweep``: only dead workers' containers of one store go; live workers, other stores and containers no
worker started stay. Checked on the real engine with ``docker ps``."""

from __future__ import annotations

import datetime as dt
import uuid

import docker
import pytest

from sandbox import Session, open_session, sweep
from sandbox.docker_backend import CREATED_AT, MARKER, MARKER_VALUE
from tests.sandbox.helpers import OpenSession


def _ids(client: docker.DockerClient, label: str) -> set[str]:
    return {c.id or "" for c in client.containers.list(all=True, filters={"label": label})}


def test_sweep_removes_dead_workers_containers_of_its_store_only(
    open_docker: OpenSession, docker_client: docker.DockerClient, run_label: str
) -> None:
    store, other = f"s-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    live = open_docker(worker="w-live", store=store)
    dead_running = open_docker(worker="w-dead", store=store)
    dead_exited = open_docker(worker="w-dead", store=store)
    docker_client.containers.get(dead_exited.runtime_id).stop(timeout=0)
    other_store = open_docker(worker="w-dead", store=other)
    no_worker = open_docker(store=store)
    legacy_young = open_docker(worker="w-dead")
    asked: list[str] = []

    def live_workers() -> set[str]:
        asked.append("live")
        return {"w-live"}

    assert sweep(store=store, live_workers=live_workers) == 2
    assert asked == ["live"]
    left = _ids(docker_client, f"durable-rlm.run={run_label}")
    assert {dead_running.runtime_id, dead_exited.runtime_id} & left == set()
    kept = (live, other_store, no_worker, legacy_young)
    assert {s.runtime_id for s in kept} <= left
    assert live.execute("x = 1", lambda _: []).status == "ok"


def test_containers_started_after_the_listing_are_not_swept(
    open_docker: OpenSession, docker_client: docker.DockerClient, run_label: str
) -> None:
    """A worker writes its lease before starting containers, so ``live_workers`` is asked after the
    listing: a worker that started meanwhile (unknown to an earlier answer) keeps its container."""
    store = f"s-{uuid.uuid4().hex[:8]}"
    open_docker(worker="w-gone", store=store)
    late: list[Session] = []

    def live_workers() -> set[str]:
        late.append(open_docker(worker="w-new", store=store))
        return set()

    assert sweep(store=store, live_workers=live_workers) == 1
    assert late[0].runtime_id in _ids(docker_client, f"durable-rlm.run={run_label}")


def test_an_empty_engine_does_not_ask_the_store(sandbox_image: str) -> None:
    def live_workers() -> set[str]:
        raise AssertionError("asked although no container of this store exists")

    assert sweep(store=f"s-{uuid.uuid4().hex[:8]}-none", live_workers=live_workers) >= 0


@pytest.fixture
def legacy_container(sandbox_image: str, docker_client: docker.DockerClient, run_label: str) -> str:
    """A container as a worker of a version before leases left it: worker label, no store, 2 h old."""
    created = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat(timespec="seconds")
    labels = {
        MARKER: MARKER_VALUE,
        f"{MARKER}.run": run_label,
        f"{MARKER}.worker": "w-old-version",
        CREATED_AT: created,
    }
    container = docker_client.containers.create(sandbox_image, command=["sleep", "600"], labels=labels)
    return container.id or ""


def test_legacy_worker_containers_go_once_older_than_an_hour(
    legacy_container: str, docker_client: docker.DockerClient, run_label: str
) -> None:
    store = f"s-{uuid.uuid4().hex[:8]}"
    young = open_session(context_path=None, labels={"run": run_label, "worker": "w-old-version"})
    try:
        assert sweep(store=store, live_workers=set) >= 1
        left = _ids(docker_client, f"durable-rlm.run={run_label}")
        assert legacy_container not in left
        assert young.runtime_id in left
    finally:
        young.close()
