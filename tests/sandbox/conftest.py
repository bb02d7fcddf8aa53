"""Fixtures for the sandbox tests: the real Docker engine and image, sessions that are always removed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from sandbox import SandboxLimits, Session, open_session, reap
from sandbox.imagebuild import ensure_image
from tests.sandbox.helpers import OpenSession


@pytest.fixture(scope="session")
def sandbox_image() -> str:
    return ensure_image()


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="session")
def run_label() -> str:
    return f"pytest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session", autouse=True)
def _reap_test_containers(run_label: str) -> Iterator[None]:
    yield
    reap(labels={"run": run_label})


def _opener(backend: str, image: str | None, run_label: str) -> Iterator[OpenSession]:
    sessions: list[Session] = []

    def open_(
        context_path: Path | None = None, limits: SandboxLimits | None = None, **labels: str
    ) -> Session:
        session = open_session(
            backend=backend,  # type: ignore[arg-type]
            context_path=context_path,
            limits=limits or SandboxLimits(),
            labels={"run": run_label, **labels},
            image=image,
        )
        sessions.append(session)
        return session

    yield open_
    for session in sessions:
        session.close()


@pytest.fixture
def open_docker(sandbox_image: str, run_label: str) -> Iterator[OpenSession]:
    yield from _opener("docker", sandbox_image, run_label)


@pytest.fixture
def open_process(run_label: str) -> Iterator[OpenSession]:
    yield from _opener("process", None, run_label)


@pytest.fixture(params=["docker", "process"])
def open_any(request: pytest.FixtureRequest, sandbox_image: str, run_label: str) -> Iterator[OpenSession]:
    image = sandbox_image if request.param == "docker" else None
    yield from _opener(request.param, image, run_label)


# A session shared by the tests of one module that only read or set their own variables.
@pytest.fixture(scope="module")
def shared_docker(sandbox_image: str, run_label: str) -> Iterator[Session]:
    with open_session(
        backend="docker", context_path=None, labels={"run": run_label}, image=sandbox_image
    ) as s:
        yield s
