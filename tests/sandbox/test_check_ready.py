"""``check_ready``: what a worker asks before it takes work. The current image on a reachable engine is
ready; a missing image or an engine that does not answer is one error saying how to fix it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import sandbox
from sandbox.imagebuild import image_ref


def test_the_built_image_on_the_engine_is_ready(sandbox_image: str) -> None:
    assert sandbox.check_ready() == image_ref() == sandbox_image


def test_a_missing_image_is_named_with_how_to_build_it(sandbox_image: str) -> None:
    missing = "durable-rlm-sandbox:never-built-for-a-test"
    with pytest.raises(
        sandbox.SandboxError, match=r"sandbox image durable-rlm-sandbox:never-built-for-a-test is missing"
    ):
        sandbox.check_ready(missing)
    with pytest.raises(sandbox.SandboxError, match=r"python -m sandbox\.imagebuild"):
        sandbox.check_ready(missing)


def test_an_engine_that_does_not_answer_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'no-engine.sock'}")
    with pytest.raises(
        sandbox.SandboxError, match=r"cannot reach the Docker engine .*RLM_SANDBOX_BACKEND=process"
    ):
        sandbox.check_ready()


def test_an_engine_that_hangs_is_unreachable_within_the_bound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A socket that accepts connections and never answers, as a wedged engine does.
    path = tmp_path / "hung-engine.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(16)
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        started = time.monotonic()
        with pytest.raises(sandbox.SandboxError, match=r"cannot reach the Docker engine .*timed out"):
            sandbox.check_ready(timeout_s=1)
        assert time.monotonic() - started < 10
