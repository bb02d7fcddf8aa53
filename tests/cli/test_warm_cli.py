"""The warm CLI (``orchestrator.warmcli``): `rlm dev` keeps a process with the client's modules loaded,
and the short-lived commands of its data directory run in processes forked from it.

Real `rlm dev` (embedded Temporal server, worker, Docker sandbox, SQLite store), real ``rlm`` processes;
the model is scripted. A command handed over must behave as one run in its own process: the same stdout,
stderr and exit code, the terminal's live view, Ctrl-C; a client that dies takes its command with it, and
`rlm dev` stops its warm process and whatever runs in it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator import warmcli
from orchestrator.warmcli.client import LENGTH, address
from tests.cli.test_datadir_lock import COUNT, RLM, _env, _ready_holder
from tests.cli.test_progress import ANSI, _on_pty
from tests.orchestrator.harness import word_context

SLOW = ("--model", "scripted/mapreduce", "--sub-model", "scripted/leaf?latency_ms=4000")
WAIT_S = 60.0


@dataclass
class Dev:
    proc: subprocess.Popen[str]
    data: Path
    env: dict[str, str]
    log: Path

    def events(self, name: str) -> list[dict[str, object]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    found.append(event)
        return found

    def handed(self) -> int:
        """How many commands the warm process has run to their end."""
        return len(self.events("warmcli.finished"))


def _start_dev(tmp: Path) -> Dev:
    data = tmp / "data"
    env = _env(data)
    log = tmp / "dev.err"
    with log.open("w") as err:
        proc = subprocess.Popen([RLM, "dev"], env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    dev = Dev(proc, data, env, log)
    _ready_holder(data / "temporal", proc)
    end = time.monotonic() + WAIT_S
    while not dev.events("warmcli.serving"):
        assert time.monotonic() < end, f"no warm CLI within {WAIT_S:g} s:\n{log.read_text()[-3000:]}"
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    return dev


def _stop_dev(dev: Dev) -> None:
    if dev.proc.poll() is None:
        dev.proc.send_signal(signal.SIGINT)
        try:
            dev.proc.wait(60)
        except subprocess.TimeoutExpired:
            dev.proc.kill()
            dev.proc.wait(10)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[Dev]:
    started = _start_dev(tmp_path_factory.mktemp("warm-cli"))
    try:
        yield started
    finally:
        _stop_dev(started)


@pytest.fixture(scope="module")
def words(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    return word_context(tmp_path_factory.mktemp("warm-cli-words") / "words.txt", 2_000)


def _rlm(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RLM, *args], env=env, capture_output=True, text=True, timeout=180, cwd=cwd)


def _imports(stderr: str) -> str:
    """The client interpreter's own imports (PYTHONPROFILEIMPORTTIME): a forked command prints none."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("import time:"))


def _warm_process(data: Path) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"orchestrator.warmcli.server" in part for part in cmdline) and str(data).encode() in cmdline:
            return int(proc.name)
    return None


def _children(pid: int) -> list[int]:
    try:
        found = (Path("/proc") / str(pid) / "task" / str(pid) / "children").read_text().split()
    except OSError:
        return []
    return [int(p) for p in found]


def _until(what: str, check: object, timeout_s: float = WAIT_S) -> None:
    end = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < end, f"{what}: not within {timeout_s:g} s"
        time.sleep(0.1)


def _slow_run(dev: Dev, context: Path) -> tuple[int, subprocess.Popen[str], str]:
    """A slow ``rlm run`` handed to ``dev``'s warm process, once its run has started (the command waits
    on it): that process's pid, the client, the run id."""
    warm = _warm_process(dev.data)
    assert warm is not None
    client = subprocess.Popen(
        [RLM, "run", COUNT, "--context", str(context), *SLOW],
        env=dev.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stderr is not None
    started = client.stderr.readline()
    while " started" not in started:
        assert started, "the run never started"
        started = client.stderr.readline()
    assert _children(warm), "the run did not start in the warm process"
    return warm, client, started.split()[1]


def test_a_run_is_handed_to_the_warm_process_and_answers_as_in_its_own(
    dev: Dev, words: tuple[Path, int]
) -> None:
    path, expected = words
    env = {**dev.env, "PYTHONPROFILEIMPORTTIME": "1"}
    before = dev.handed()
    warm = _rlm(env, "run", COUNT, "--context", str(path))
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout == f"{expected}\n"
    assert "status completed" in warm.stderr
    assert dev.handed() == before + 1
    # The client imported neither the store nor Temporal's client nor Typer: the warm process had them.
    client_imports = _imports(warm.stderr)
    assert "orchestrator.warmcli.client" in client_imports
    for heavy in ("sqlalchemy", "temporalio", "typer", "structlog"):
        assert heavy not in client_imports, heavy

    cold = _rlm({**env, "RLM_WARM_CLI": "0"}, "run", COUNT, "--context", str(path))
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout == warm.stdout
    assert "sqlalchemy" in _imports(cold.stderr)  # the same check sees a command run in its own process
    assert dev.handed() == before + 1


@pytest.mark.parametrize(
    "argv",
    [
        ("status", "no-such-run"),
        ("runs", "--status", "nope"),
        ("tree", "no-such-run", "--json"),
        ("run", "a question", "--context", "missing.txt"),
        ("run", "a question", "--context", "words.txt", "--max-depth", "-1"),
        ("wait", "no-such-run", "--timeout", "x"),
        ("show", "--help"),
    ],
)
def test_output_and_exit_codes_are_those_of_a_command_run_in_its_own_process(
    dev: Dev, words: tuple[Path, int], argv: tuple[str, ...]
) -> None:
    # Relative paths: the command runs in the client's working directory.
    cwd = words[0].parent
    before = dev.handed()
    warm = _rlm(dev.env, *argv, cwd=cwd)
    assert dev.handed() == before + 1
    cold = _rlm({**dev.env, "RLM_WARM_CLI": "0"}, *argv, cwd=cwd)
    assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    if argv[-1] != "--help":
        assert warm.returncode != 0 and warm.stderr, warm


async def test_the_terminal_gets_the_live_view_from_a_handed_run(dev: Dev, words: tuple[Path, int]) -> None:
    path, expected = words
    before = dev.handed()
    done = await _on_pty(dev.env, RLM, "run", COUNT, "--context", str(path), *SLOW)
    shown = ANSI.sub("", done.raw)
    assert done.code == 0, shown
    assert done.out == f"{expected}\n"
    assert shown.count("sub-calls") >= 2 and "progress " not in shown, shown
    assert dev.handed() == before + 1


def test_ctrl_c_reaches_the_handed_command_and_the_run_goes_on(dev: Dev, words: tuple[Path, int]) -> None:
    path, expected = words
    _, client, run_id = _slow_run(dev, path)
    client.send_signal(signal.SIGINT)
    out, err = client.communicate(timeout=WAIT_S)
    assert client.returncode == 130, err
    assert out == "" and "interrupted; the run continues" in err
    waited = _rlm(dev.env, "wait", run_id)
    assert waited.returncode == 0, waited.stderr
    assert f"answer: {expected}" in waited.stdout


def test_a_killed_client_takes_its_command_with_it(dev: Dev, words: tuple[Path, int]) -> None:
    warm, client, _ = _slow_run(dev, words[0])
    command = _children(warm)
    client.kill()
    client.communicate(timeout=15)
    _until("the command gone", lambda: not set(command) & set(_children(warm)), timeout_s=15)
    _until("its end logged", lambda: dev.events("warmcli.finished")[-1]["pid"] == command[0])
    assert dev.events("warmcli.finished")[-1]["exit"] == 128 + signal.SIGTERM


def _request(data: Path, body: bytes, fds: list[int]) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(address(data, os.getuid()))
        socket.send_fds(sock, [LENGTH.pack(len(body)) + body], fds)
        sock.shutdown(socket.SHUT_WR)
        return sock.makefile("rb").read()


def test_bad_requests_are_refused_and_the_warm_process_keeps_serving(dev: Dev) -> None:
    stdio = [0, 1, 2]
    assert _request(dev.data, b"not json", stdio) == b""  # logged and dropped
    refused = json.loads(_request(dev.data, json.dumps({"install": "elsewhere"}).encode(), stdio))
    assert refused == {"refused": "another interpreter or install of durable-rlm"}
    assert any(e["reason"] == refused["refused"] for e in dev.events("warmcli.refused"))
    # A client of another user is refused before the warm process reads a byte of it.
    other = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
         "import socket, sys\n"
         "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
         "s.connect(bytes.fromhex(sys.argv[1]))\n"
         "print(s.makefile('rb').readline().decode())\n",
         address(dev.data, os.getuid()).hex()],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout) == {"refused": "another user"}
    before = dev.handed()
    status = _rlm(dev.env, "status", "no-such-run")
    assert status.returncode == 1 and dev.handed() == before + 1


def test_an_install_changed_since_the_warm_process_started_runs_its_commands_itself(dev: Dev) -> None:
    # An upgrade or an edit while `rlm dev` runs: its warm process still runs the code it imported.
    source = Path(warmcli.__file__)
    before = source.stat()
    handed = dev.handed()
    try:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
        status = _rlm(dev.env, "status", "no-such-run")
        assert status.returncode == 1 and "does not exist" in status.stderr
        assert dev.handed() == handed  # ran in its own process
        assert any(
            e["reason"] == "another interpreter or install of durable-rlm"
            for e in dev.events("warmcli.refused")
        )
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _rlm(dev.env, "status", "no-such-run").returncode == 1
    assert dev.handed() == handed + 1  # the source as it was: handed again


def test_rlm_dev_stops_its_warm_process_and_the_commands_in_it(
    tmp_path: Path, sandbox_image: str, words: tuple[Path, int]
) -> None:
    own = _start_dev(tmp_path)
    try:
        _, client, _ = _slow_run(own, words[0])
        own.proc.send_signal(signal.SIGINT)
        own.proc.wait(60)
        out, err = client.communicate(timeout=30)
        assert client.returncode == 128 + signal.SIGTERM, err
        assert out == "" and "stopped by SIGTERM; the run continues" in err
        assert _warm_process(own.data) is None
        # The commands are stopped first, while the worker still serves: one starting meanwhile would
        # otherwise find no live worker and start its own inside the stopping `rlm dev`.
        (warm_stopping,) = own.events("warmcli.stopping")
        (worker_stopped,) = own.events("worker.stopped")
        assert str(warm_stopping["timestamp"]) < str(worker_stopped["timestamp"])
        # With no warm process the command runs in its own.
        status = _rlm({**own.env, "PYTHONPROFILEIMPORTTIME": "1"}, "status", "no-such-run")
        assert status.returncode == 1 and "sqlalchemy" in _imports(status.stderr)
    finally:
        _stop_dev(own)


def test_an_environment_too_large_for_a_request_keeps_the_command_in_its_own_process(dev: Dev) -> None:
    # 12 variables of 100,000 characters: more than a warm process reads, less than exec allows.
    big = {f"RLM_TEST_BULK_{i}": "x" * 100_000 for i in range(12)}
    before = dev.handed()
    done = _rlm({**dev.env, **big}, "status", "no-such-run")
    assert done.returncode == 1 and done.stderr == "error: run 'no-such-run' does not exist\n"
    assert dev.handed() == before


def test_a_closed_stdin_keeps_the_command_in_its_own_process(dev: Dev) -> None:
    before = dev.handed()
    done = subprocess.run(
        [RLM, "status", "no-such-run"], env=dev.env, capture_output=True, text=True, timeout=60, stdin=None,
        preexec_fn=lambda: os.close(0),
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.startswith("error: ")
    assert dev.handed() == before


async def test_commands_at_once_each_get_their_own_process(dev: Dev, words: tuple[Path, int]) -> None:
    path, expected = words

    async def one() -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            RLM, "run", COUNT, "--context", str(path), env=dev.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 180)
        assert proc.returncode is not None
        return proc.returncode, out

    before = dev.handed()
    results = await asyncio.gather(*(one() for _ in range(4)))
    assert results == [(0, f"{expected}\n".encode())] * 4
    assert dev.handed() == before + 4
    pids = [e["pid"] for e in dev.events("warmcli.finished")[-4:]]
    assert len(set(pids)) == 4


def test_a_warm_process_killed_under_a_command_fails_it_once_and_later_commands_run_alone(
    tmp_path: Path, sandbox_image: str, words: tuple[Path, int]
) -> None:
    own = _start_dev(tmp_path)
    try:
        warm, client, _ = _slow_run(own, words[0])
        (command,) = _children(warm)
        os.kill(warm, signal.SIGKILL)
        out, err = client.communicate(timeout=30)
        # The command dies with the warm process (the run goes on), and the client does not run it again.
        assert client.returncode == 1 and out == ""
        assert "error: `rlm dev`'s warm process went away while it ran this command" in err
        assert "stopped by SIGTERM; the run continues" in err
        _until("the command gone", lambda: not Path(f"/proc/{command}").exists(), timeout_s=15)
        status = _rlm({**own.env, "PYTHONPROFILEIMPORTTIME": "1"}, "status", "no-such-run")
        assert status.returncode == 1 and "sqlalchemy" in _imports(status.stderr)
    finally:
        _stop_dev(own)
