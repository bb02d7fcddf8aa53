"""Snapshots: what is kept, what is named as left out, and restoring into a fresh container."""

from __future__ import annotations

import docker
import pytest

from sandbox import SandboxError
from tests.sandbox.helpers import OpenSession, no_subcalls


def test_snapshot_restored_into_a_new_container_after_docker_kill(
    open_docker: OpenSession, docker_client: docker.DockerClient
) -> None:
    old = open_docker()
    code = (
        "import math as m\nrows = [{'id': i, 'text': 'row %d' % i} for i in range(1000)]\n"
        "shared = [1, 2]\nalias = shared\n"
        "def score(row, bonus=1):\n    return len(row['text']) + bonus + m.floor(0.5)\n"
        "scale = 3\nscaled = lambda v: v * scale\n"
        "def make_adder(n):\n    def add(v):\n        return v + n\n    return add\nadd5 = make_adder(5)"
    )
    result = old.execute(code, no_subcalls)
    assert result.status == "ok", result.traceback
    assert result.unpicklable == []
    assert result.snapshot is not None
    docker_client.containers.get(old.runtime_id).kill()

    new = open_docker()
    new.restore(result.snapshot)
    check = new.execute(
        "print(len(rows), rows[999]['text'], score(rows[5]), scaled(2), add5(1), m.pi > 3, alias is shared)",
        no_subcalls,
    )
    assert check.status == "ok", check.traceback
    assert check.stdout == "1000 row 999 6 6 6 True True\n"
    assert set(check.variables) == {
        "rows",
        "shared",
        "alias",
        "score",
        "scale",
        "scaled",
        "make_adder",
        "add5",
    }


def test_unpicklable_variables_are_named_and_the_rest_is_kept(open_docker: OpenSession) -> None:
    session = open_docker()
    code = (
        "gen = (i for i in range(3))\nhandle = open('/tmp/notes.txt', 'w')\n"
        "class Point:\n    pass\np = Point()\nkept = {'a': 1}\n"
        "deep = []\nfor _ in range(200_000):\n    deep = [deep]"
    )
    result = session.execute(code, no_subcalls)
    assert result.status == "ok"
    assert result.unpicklable == ["Point", "deep", "gen", "handle", "p"]
    assert result.variables["gen"] == "generator"
    assert result.variables["handle"] == "TextIOWrapper"
    assert (
        result.message is not None and "gen (TypeError: cannot pickle 'generator' object)" in result.message
    )
    assert result.snapshot is not None
    fresh = open_docker()
    fresh.restore(result.snapshot)
    after = fresh.execute("print(sorted(SHOW_VARS()))", no_subcalls)
    assert after.stdout == "['_', 'kept']\n"


def test_restore_replaces_the_namespace(open_process: OpenSession) -> None:
    session = open_process()
    first = session.execute("a = 1", no_subcalls)
    session.execute("b = 2\na = 'changed'\nimport json", no_subcalls)
    assert first.snapshot is not None
    session.restore(first.snapshot)
    result = session.execute("print(SHOW_VARS(), a, 'json' in dir())", no_subcalls)
    assert result.stdout == "{'a': 'int'} 1 False\n"


def test_context_and_helpers_are_not_in_the_snapshot(open_process: OpenSession, tmp_path: object) -> None:
    session = open_process()
    result = session.execute("x = 1", no_subcalls)
    assert result.snapshot is not None
    assert b"llm_query" not in result.snapshot and b"context" not in result.snapshot


def test_garbage_snapshot_is_a_clear_error_and_the_session_survives(open_docker: OpenSession) -> None:
    session = open_docker()
    session.execute("x = 'kept'", no_subcalls)
    with pytest.raises(SandboxError, match="snapshot could not be loaded"):
        session.restore(b"not a pickle")
    assert session.execute("print(x)", no_subcalls).stdout == "kept\n"
    with pytest.raises(ValueError, match="non-empty bytes"):
        session.restore(b"")


def test_ten_mb_snapshot_round_trip(open_docker: OpenSession) -> None:
    session = open_docker()
    result = session.execute("big = ['%09d' % i for i in range(1_000_000)]", no_subcalls)
    assert result.snapshot is not None and len(result.snapshot) > 10_000_000
    other = open_docker()
    other.restore(result.snapshot)
    assert other.execute("print(len(big), big[-1])", no_subcalls).stdout == "1000000 000999999\n"
