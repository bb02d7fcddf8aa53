"""The sandbox pool: started containers with every cap, each serving one session, the context streamed."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from orchestrator.settings import SettingsError, load_settings
from sandbox import SandboxLimits, SandboxPool, Session, open_session, reap
from sandbox.docker_backend import DockerLauncher, normalise_labels
from sandbox.runtime.context import load_context
from tests.sandbox.helpers import no_subcalls

LIMITS = SandboxLimits(memory_bytes=256 << 20, pids=64, tmpfs_bytes=16 << 20)
STORE = "pytest-pool"
HASH_CONTEXT = "import hashlib, json\nprint(hashlib.sha256(json.dumps(context).encode()).hexdigest())"


def _wait_until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the pool did not fill in time"
        time.sleep(0.1)


def _hash(value: object) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()


@pytest.fixture
def worker() -> str:
    return f"pytest-pool-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pool(sandbox_image: str, worker: str) -> Iterator[SandboxPool]:
    pool = SandboxPool(2, limits=LIMITS, labels={"worker": worker, "store": STORE}, image=sandbox_image)
    pool.start()
    _wait_until(lambda: pool.ready_count() == 2)
    try:
        yield pool
    finally:
        pool.close()
        reap(labels={"worker": worker, "store": STORE})


@pytest.fixture
def open_pooled(
    pool: SandboxPool, sandbox_image: str, run_label: str, worker: str
) -> Iterator[Callable[..., Session]]:
    sessions: list[Session] = []

    def open_(context_path: Path | None = None, node: str = "n", limits: SandboxLimits = LIMITS) -> Session:
        session = open_session(
            context_path=context_path,
            limits=limits,
            labels={"run": run_label, "node": node, "worker": worker, "store": STORE},
            image=sandbox_image,
            pool=pool,
        )
        sessions.append(session)
        return session

    yield open_
    for session in sessions:
        session.close()


def _name(client: docker.DockerClient, session: Session) -> str:
    return str(client.containers.get(session.runtime_id).name)


def test_a_pooled_container_has_every_cap(
    open_pooled: Callable[..., Session], docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret 5f1d")
    session = open_pooled(node="caps")
    assert _name(docker_client, session).startswith("durable-rlm-r")  # it came from the pool
    config = docker_client.containers.get(session.runtime_id).attrs["HostConfig"]
    assert (config["NetworkMode"], config["Memory"], config["PidsLimit"]) == ("none", 256 << 20, 64)
    assert config["ReadonlyRootfs"] and config["CapDrop"] == ["ALL"]
    network = session.execute(
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)", no_subcalls
    )
    assert network.status == "error" and "unreachable" in (network.traceback or "").lower()
    read = session.execute(f"print(open({str(secret)!r}).read())", no_subcalls)
    assert "FileNotFoundError" in (read.traceback or "")
    mounts = session.execute("print(open('/proc/self/mounts').read())", no_subcalls).stdout
    host_backed = {line.split()[1] for line in mounts.splitlines() if line.startswith("/dev/")}
    assert host_backed == {
        "/usr/sbin/docker-init",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/etc/hosts",
        "/run/rlm-control.sock",
    }
    forks = session.execute("import os\nwhile True:\n    os.fork()", no_subcalls)
    assert "BlockingIOError" in (forks.traceback or ""), forks.message
    bomb = session.execute("bomb = 'a' * 10**10", no_subcalls)
    assert bomb.status in ("oom", "error"), bomb.message
    assert bomb.status == "oom" or "MemoryError" in (bomb.traceback or "")


def test_contexts_arrive_as_the_mount_would_give_them(
    open_pooled: Callable[..., Session], pool: SandboxPool, tmp_path: Path
) -> None:
    text = tmp_path / "book.txt"
    # Several MB with what decoding must treat alike: CRLF, a lone CR, invalid UTF-8, non-ASCII.
    text.write_bytes(b"line\r\nnext\rthird \xff\xfe bytes \xc3\xa9t\xc3\xa9\n" * 150_000)
    folder = tmp_path / "docs"
    (folder / "b" / "c").mkdir(parents=True)
    (folder / "a.txt").write_text("first\r\n")
    (folder / "b" / "c" / "z.md").write_text("deep é")
    (folder / "b" / "y.txt").write_bytes(b"\xff bad")
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"id": i, "label": f"é{i}"} for i in range(20_000)]))
    corpus = tmp_path / "corpus.docs"
    corpus.write_text(json.dumps({"documents": ["alpha\r\n", {"n": 2}], "names": ["a.txt", "r.jsonl:2"]}))
    for path in (text, folder, data, corpus):
        _wait_until(lambda: pool.ready_count() > 0)
        session = open_pooled(path, node=f"ctx-{path.name}")
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        assert session.bytes_sent > sum(p.stat().st_size for p in files)  # it was streamed
        result = session.execute(HASH_CONTEXT, no_subcalls)
        assert result.stdout.strip() == _hash(load_context(str(path))), path
        if path == corpus:
            names = session.execute("print(type(context).__name__, context.names)", no_subcalls)
            assert names.stdout == "Documents ['a.txt', 'r.jsonl:2']\n"
        session.close()


def test_a_pooled_container_serves_one_session_and_the_pool_refills(
    open_pooled: Callable[..., Session], pool: SandboxPool, docker_client: docker.DockerClient, run_label: str
) -> None:
    first = open_pooled(node="one")
    taken = first.runtime_id
    assert _name(docker_client, first).startswith("durable-rlm-r")
    first.close()
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(taken)
    _wait_until(lambda: pool.ready_count() == 2)
    second = open_pooled(node="two")
    assert second.runtime_id != taken
    # A finished node's reap finds a taken container by its run and node, though it has no such labels.
    assert reap(labels={"run": run_label, "node": "other"}) == 0
    assert reap(labels={"run": run_label, "node": "two"}) == 1
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(second.runtime_id)


def test_other_caps_start_their_own_container(open_pooled: Callable[..., Session], pool: SandboxPool) -> None:
    session = open_pooled(node="big", limits=SandboxLimits(memory_bytes=512 << 20, pids=64))
    assert pool.ready_count() == 2
    assert session.execute("print(1)", no_subcalls).stdout == "1\n"


def test_closing_the_pool_removes_its_containers(
    sandbox_image: str, worker: str, docker_client: docker.DockerClient
) -> None:
    pool = SandboxPool(2, limits=LIMITS, labels={"worker": worker, "store": STORE}, image=sandbox_image)
    pool.start()
    try:
        _wait_until(lambda: pool.ready_count() == 2)
    finally:
        began = time.monotonic()
        pool.close()
    assert time.monotonic() - began < 10
    left = docker_client.containers.list(all=True, filters={"label": f"durable-rlm.worker={worker}"})
    assert left == []
    assert pool.take(sandbox_image, LIMITS, {"worker": worker, "store": STORE}) is None


def test_the_pool_size_setting() -> None:
    assert load_settings({}).sandbox_pool == 2
    assert load_settings({"RLM_SANDBOX_POOL": "0"}).sandbox_pool == 0
    with pytest.raises(SettingsError, match=r"RLM_SANDBOX_POOL=.-2. must be a whole number from 0 \(no pool"):
        load_settings({"RLM_SANDBOX_POOL": "-2"})
    with pytest.raises(SettingsError, match="to 64"):
        load_settings({"RLM_SANDBOX_POOL": "65"})


def test_a_pooled_runtime_that_died_is_replaced_by_a_launched_one(
    pool: SandboxPool, sandbox_image: str, run_label: str, worker: str, docker_client: docker.DockerClient
) -> None:
    labels = {"run": run_label, "node": "dead", "worker": worker, "store": STORE}
    started = pool.take(sandbox_image, LIMITS, labels)
    assert started is not None
    docker_client.containers.get(started.runtime.ident).kill()
    launcher = DockerLauncher(docker_client, sandbox_image, None, LIMITS, normalise_labels(labels))
    session = Session(launcher, LIMITS, started=started)
    try:
        assert session.runtime_id != started.runtime.ident
        assert session.execute("print(1)", no_subcalls).stdout == "1\n"
    finally:
        session.close()


def test_after_a_take_the_refill_waits_while_a_container_is_ready_but_never_when_none_is(
    sandbox_image: str, worker: str, run_label: str
) -> None:
    # A delay far longer than this test: a refill inside it can only come from an empty pool.
    pool = SandboxPool(
        2, limits=LIMITS, labels={"worker": worker, "store": STORE}, image=sandbox_image, refill_delay_s=600
    )
    labels = {"run": run_label, "node": "n", "worker": worker, "store": STORE}
    taken = []
    pool.start()
    try:
        _wait_until(lambda: pool.ready_count() == 2)  # the first fill does not wait
        taken.append(pool.take(sandbox_image, LIMITS, labels))
        time.sleep(3)  # a boot takes well under a second here; the refill is waiting, not booting
        assert pool.ready_count() == 1
        taken.append(pool.take(sandbox_image, LIMITS, labels))
        assert pool.ready_count() == 0
        _wait_until(lambda: pool.ready_count() > 0)  # empty: refilled at once, the delay notwithstanding
    finally:
        for started in taken:
            if started is not None:
                started.conn.close()
        pool.close()
        reap(labels={"worker": worker, "store": STORE})
        reap(labels={"run": run_label})
    assert all(started is not None for started in taken)


def test_a_pool_without_refill_fills_once_and_boots_nothing_after_a_take(
    sandbox_image: str, worker: str, run_label: str, docker_client: docker.DockerClient
) -> None:
    # The one-shot worker's pool: a container ready for the first cell, none booted after it.
    pool = SandboxPool(
        1, limits=LIMITS, labels={"worker": worker, "store": STORE}, image=sandbox_image, refill=False
    )
    labels = {"run": run_label, "node": "n", "worker": worker, "store": STORE}
    taken = None
    pool.start()
    try:
        _wait_until(lambda: pool.ready_count() == 1)
        taken = pool.take(sandbox_image, LIMITS, labels)
        assert taken is not None
        time.sleep(3)  # a boot takes well under a second here: a refill would have shown
        assert pool.ready_count() == 0
        assert pool.take(sandbox_image, LIMITS, labels) is None
        mine = docker_client.containers.list(all=True, filters={"label": f"durable-rlm.worker={worker}"})
        assert [c.id for c in mine] == [taken.runtime.ident]
    finally:
        if taken is not None:
            taken.conn.close()
        pool.close()
        reap(labels={"worker": worker, "store": STORE})
        reap(labels={"run": run_label})


def test_a_filled_pool_and_its_sessions_keep_no_directory_on_the_host(
    sandbox_image: str, worker: str, run_label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed with SIGKILL cleans nothing up: once its runtimes are connected, nothing of the
    # pool or of a session may be left on the host's disk to leak.
    made: list[str] = []
    mkdtemp = tempfile.mkdtemp

    def recording(*args: Any, **kwargs: Any) -> str:
        made.append(path := mkdtemp(*args, **kwargs))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    pool = SandboxPool(2, limits=LIMITS, labels={"worker": worker, "store": STORE}, image=sandbox_image)
    pool.start()
    try:
        _wait_until(lambda: pool.ready_count() == 2)
        labels = {"run": run_label, "node": "n", "worker": worker, "store": STORE}
        with open_session(
            context_path=None, limits=LIMITS, labels=labels, image=sandbox_image, pool=pool
        ) as s:
            # A killed runtime is replaced by a launched one: its socket's directory goes too.
            lost = s.execute("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", no_subcalls)
            assert lost.status == "crashed"
            assert s.execute("print(1)", no_subcalls).stdout == "1\n"
            assert [p for p in made if os.path.exists(p)] == []
            assert len(made) >= 3  # two pooled boots and the replacement
    finally:
        pool.close()
        reap(labels={"worker": worker, "store": STORE})
