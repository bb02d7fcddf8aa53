"""stdout carries results only: Temporal's core logs, stdlib logging and litellm's own handler go to
stderr, and ``results_stdout`` keeps what libraries print off the result stream."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from orchestrator.devstack import DevServer
from orchestrator.logs import results_stdout
from tests.foundation.conftest import RLM, cli_env
from tests.orchestrator.harness import word_context

PYTHON = sys.executable


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-c", code],
        env=cli_env(Path("/nonexistent"), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_results_stdout_sends_prints_native_writes_and_children_to_stderr() -> None:
    done = _python(
        "import os, subprocess\n"
        "from orchestrator.logs import results_stdout\n"
        "print('before', flush=True)\n"
        "with results_stdout() as out:\n"
        "    print('a library banner')\n"
        "    os.write(1, b'a native write\\n')\n"
        "    subprocess.run(['echo', 'a child process'], check=True)\n"
        "    out.write('the answer\\n')\n"
        "print('after')\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "before\nthe answer\nafter\n"
    for line in ("a library banner", "a native write", "a child process"):
        assert line in done.stderr


def test_results_stdout_with_an_in_process_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    with results_stdout() as result:
        print("a library banner")
        result.write("the answer\n")
    print("after")
    assert out.getvalue() == "the answer\nafter\n"
    assert err.getvalue() == "a library banner\n"


def test_stdlib_and_litellm_records_reach_stderr_never_stdout() -> None:
    done = _python(
        "import logging\n"
        "from orchestrator.logs import configure_logging\n"
        "configure_logging('info')\n"
        "logging.getLogger('temporalio.core-sdk_core::temporalio_client::retry').warning('core retried')\n"
        "logging.getLogger('some.library').warning('library warned')\n"
        "logging.getLogger('some.library').info('library chatter')\n"
        "from litellm._logging import verbose_logger\n"
        "verbose_logger.info('litellm info')\n"
        "verbose_logger.warning('litellm warned')\n",
        RLM_LOG_LEVEL="debug",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    for text in ("core retried", "library warned", "library chatter", "litellm warned"):
        assert text in done.stderr
    # litellm's handler writes records below WARNING to stdout: those are held back; the rest appear once.
    assert "litellm info" not in done.stderr and done.stderr.count("litellm warned") == 1


def _count_words(tmp_path: Path, dev_server: DevServer, sub_model: str, **env: str) -> str:
    """``rlm run`` of a two-chunk word count on ``dev_server``: its stderr, once its stdout was the answer."""
    context, expected = word_context(tmp_path / "words.txt", 2_000)
    queue = f"stdout-{uuid.uuid4().hex[:8]}"
    cli = cli_env(tmp_path / "data", TEMPORAL_ADDRESS=dev_server.address, RLM_TASK_QUEUE=queue, **env)
    args = [
        RLM,
        "run",
        "How many times does the word 'ERROR' appear? Use 2 chunks.",
        "--context",
        str(context),
    ]
    args += ["--model", "scripted/mapreduce", "--sub-model", sub_model, "--deadline", "240"]
    done = subprocess.run(args, env=cli, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{expected}\n"
    return done.stderr


def test_rlm_run_prints_only_the_answer_while_the_core_logs(tmp_path: Path, dev_server: DevServer) -> None:
    stderr = _count_words(tmp_path, dev_server, "scripted/leaf", RLM_TEMPORAL_LOG_LEVEL="info")
    # The core logged (its worker start at info), and its lines went to stderr through Python logging.
    assert "Initializing worker" in stderr and "temporalio.core" in stderr


def test_a_long_workflow_task_that_held_a_model_call_is_not_a_warning_others_are() -> None:
    """The core warns of every workflow task past 5 s; a task that runs a model call lasts as long as it."""
    code = (
        "import logging, time\n"
        "from orchestrator.logs import CORE_LOGGER, LOCAL_MODEL_CALLS, configure_logging\n"
        "configure_logging('info')\n"
        "core = logging.getLogger(CORE_LOGGER)\n"
        "def long_task(run):\n"
        "    core.warning(f'[TMPRL1104] {run}:16:1 Workflow task duration exceeded 5 seconds.')\n"
        "LOCAL_MODEL_CALLS.GRACE_S = 1.0\n"
        "with LOCAL_MODEL_CALLS.held('stale-run'):\n"
        "    pass\n"
        "time.sleep(1.3)\n"
        "with LOCAL_MODEL_CALLS.held('ended-run'):\n"
        "    pass\n"
        "with LOCAL_MODEL_CALLS.held('calling-run'):\n"
        "    for run in ('calling-run', 'ended-run', 'stale-run', 'other-run'):\n"
        "        long_task(run)\n"
        "    core.warning('[TMPRL1101] calling-run: not about its task time')\n"
    )
    quiet = _python(code)
    assert quiet.returncode == 0, quiet.stderr
    assert "calling-run:16" not in quiet.stderr and "ended-run:16" not in quiet.stderr
    assert "stale-run:16" in quiet.stderr and "other-run:16" in quiet.stderr
    assert "TMPRL1101" in quiet.stderr
    told = _python(code, RLM_TEMPORAL_LOG_LEVEL="debug")
    assert told.returncode == 0, told.stderr
    held_line = next(line for line in told.stderr.splitlines() if "calling-run:16" in line)
    assert '"level": "debug"' in held_line, held_line


def test_rlm_run_on_a_slow_sub_model_prints_no_task_time_warnings(
    tmp_path: Path, dev_server: DevServer
) -> None:
    stderr = _count_words(tmp_path, dev_server, "scripted/leaf?latency_ms=5600")
    # Each leaf's call held its workflow task past 5 s; that is how a leaf works, not a warning.
    assert "TMPRL1104" not in stderr, stderr


def test_rlm_run_with_inline_leaves_on_a_slow_sub_model_prints_no_task_time_warnings(
    tmp_path: Path, dev_server: DevServer
) -> None:
    stderr = _count_words(tmp_path, dev_server, "scripted/leaf?latency_ms=5600", RLM_LEAF_MODE="inline")
    # The node's own workflow task held its inline leaves' calls; that is how inline leaves work.
    assert "TMPRL1104" not in stderr, stderr


def test_rlm_run_sends_what_a_library_prints_during_the_run_to_stderr(
    tmp_path: Path, dev_server: DevServer
) -> None:
    # A library that prints (as litellm does on some errors) and native code that writes to file
    # descriptor 1, both inside the in-process worker while the run works.
    noisy = (
        "import os, sys\n"
        "from orchestrator.llm.scripted import ScriptedLLM\n"
        "plain = ScriptedLLM.acompletion\n"
        "async def noisy(self, *args, **kwargs):\n"
        "    print('a library printed')\n"
        "    os.write(1, b'native bytes on fd 1\\n')\n"
        "    return await plain(self, *args, **kwargs)\n"
        "ScriptedLLM.acompletion = noisy\n"
        "from orchestrator.cli import main\n"
        "sys.argv[0] = 'rlm'\n"
        "main()\n"
    )
    context, expected = word_context(tmp_path / "words.txt", 2_000)
    env = cli_env(
        tmp_path / "data",
        TEMPORAL_ADDRESS=dev_server.address,
        RLM_TASK_QUEUE=f"stdout-{uuid.uuid4().hex[:8]}",
    )
    args = [sys.executable, "-c", noisy, "run", "How many times does the word 'ERROR' appear? Use 2 chunks."]
    args += ["--context", str(context), "--model", "scripted/mapreduce", "--sub-model", "scripted/leaf"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "a library printed" in done.stderr and "native bytes on fd 1" in done.stderr
    assert done.stdout == f"{expected}\n"
