"""``rlm worker`` subprocesses for tests that kill or stop workers, and a local OpenAI-compatible endpoint
that answers leaf prompts (a real provider path through litellm's OpenAI client)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker

from orchestrator.llm.policies import leaf_answer
from orchestrator.settings import Settings
from sandbox.docker_backend import containers
from tests.chat_endpoint import chat_endpoint

# In litellm's bundled price map, so no price needs registering; the endpoint decides what it answers.
OPENAI_MODEL = "openai/gpt-4o-mini"


class WorkerProcess:
    """``rlm worker`` as a subprocess (its own process group, so SIGKILL takes everything)."""

    def __init__(self, settings: Settings, log: Path, env: Mapping[str, str] | None = None) -> None:
        full_env = {
            **os.environ,
            "TEMPORAL_ADDRESS": settings.temporal_address or "",
            "RLM_DATABASE_URL": settings.database_url,
            "RLM_DATA_DIR": str(settings.data_dir),
            "RLM_TASK_QUEUE": settings.task_queue,
            "RLM_SANDBOX_BACKEND": settings.sandbox_backend,
            "RLM_MODEL": settings.model,
            "RLM_SUB_MODEL": settings.sub_model,
            "RLM_LOG_LEVEL": "info",
            **(env or {}),
        }
        self.log_path = log
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "rlm"), "worker"],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def worker_prefix(self) -> str:
        """The start of this worker's id (``orchestrator.worker.new_worker_id``)."""
        return f"{socket.gethostname()}-{self.proc.pid}-"

    def wait_serving(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while b"worker.started" not in self.log_path.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def run_containers(run_id: str) -> list[dict[str, str]]:
    """Labels of every sandbox container of ``run_id`` on the engine (running or not), pooled ones
    (found by their claimed name) included."""
    client = docker.from_env()
    try:
        return [dict(c.attrs.get("Labels") or {}) for c in containers(client, {"run": run_id})]
    finally:
        client.close()


def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def leaf_reply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    prompt = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": body.get("model", "gpt-4o-mini"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": leaf_answer(prompt)},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22},
    }


@contextmanager
def leaf_endpoint() -> Iterator[str]:
    """An OpenAI-compatible ``/v1`` base URL whose chat completions answer leaf prompts correctly."""
    with chat_endpoint(leaf_reply) as endpoint:
        yield endpoint.url


def model_call_processes(parent: int | None = None) -> list[int]:
    """The model-call children of ``parent`` (this process)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"call_process_main" in cmdline:
            found.append(int(entry.name))
    return found


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
