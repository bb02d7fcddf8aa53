"""One embedded Temporal server per data directory (``orchestrator.devlock``): ``rlm run`` and
``rlm submit`` use the ``rlm dev`` of their data directory, a second ``rlm dev`` is refused, a second
``rlm run`` never starts a second server, and a lock whose holder was killed is taken over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.devlock import DataDirBusy, DataDirLock, Holder, claim, read_holder
from orchestrator.devstack import DevServer, DevServerConfig
from sandbox.pids import alive
from tests.orchestrator.harness import word_context

RLM = str(Path(sys.executable).parent / "rlm")
COUNT = "How many times does the word 'ERROR' appear? Use 3 chunks."


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env.update(
        {"RLM_DATA_DIR": str(data), "RLM_MODEL": "scripted/mapreduce", "RLM_SUB_MODEL": "scripted/leaf"}
    )
    return env


def _rlm(env: dict[str, str], *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RLM, *args], env=env, capture_output=True, text=True, timeout=timeout_s)


def _servers(temporal_dir: Path) -> list[int]:
    """Pids of the live Temporal dev servers whose database is in ``temporal_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"start-dev" in cmdline and str(temporal_dir).encode() in cmdline and alive(int(proc.name)):
            pids.append(int(proc.name))
    return pids


def _ready_holder(temporal_dir: Path, proc: subprocess.Popen[str], timeout_s: float = 120) -> Holder:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        holder = read_holder(temporal_dir)
        if holder is not None and holder.ready:
            return holder
        assert proc.poll() is None, f"rlm dev exited with {proc.returncode}"
        time.sleep(0.3)
    raise AssertionError(f"rlm dev did not publish a ready server in {temporal_dir} within {timeout_s} s")


def test_claim_gives_the_lock_to_one_process_and_the_holder_to_the_others(tmp_path: Path) -> None:
    lock = claim(tmp_path, 1.0)
    assert isinstance(lock, DataDirLock)
    # A holder that has not published a ready server yet is waited for, then named as unknown.
    with pytest.raises(DataDirBusy, match="did not publish a server within 1 s"):
        claim(tmp_path, 1.0)
    holder = Holder(os.getpid(), "127.0.0.1:1", None, shared=True, data_dir=str(tmp_path), ready=True)
    lock.publish(holder)
    assert claim(tmp_path, 1.0) == holder
    lock.release()
    assert read_holder(tmp_path) is None
    again = claim(tmp_path, 1.0)
    assert isinstance(again, DataDirLock)
    again.release()


HOLDER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    from orchestrator.devlock import Holder, claim

    directory = Path(sys.argv[1])
    lock = claim(directory, 5.0)
    # A stand-in for the server: it inherits the lock and names the data directory on its command line.
    server = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", str(directory)],
        pass_fds=(lock.fileno(),),
        start_new_session=True,
    )
    lock.publish(Holder(os.getpid(), "127.0.0.1:1", None, False, str(directory), server.pid, True))
    print(server.pid, flush=True)
    time.sleep(600)
    """
)


def _gone(pid: int, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while alive(pid):
        assert time.monotonic() < end, f"process {pid} still runs {timeout_s:g} s after its parent died"
        time.sleep(0.1)


PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from orchestrator.parent_death import ends_with_parent

    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        start_new_session=True,
        preexec_fn=ends_with_parent(),
    )
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


def test_a_child_started_to_end_with_its_parent_ends_when_the_parent_is_killed_outright() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        _gone(child, timeout_s=5)
    finally:
        parent.kill()
        parent.wait(10)
        if child is not None and alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_lock_whose_holder_was_killed_is_taken_over_and_its_orphan_stopped(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert holder.stdout is not None
        orphan = int(holder.stdout.readline())
        busy = claim(tmp_path, 1.0)
        assert isinstance(busy, Holder) and busy.pid == holder.pid and busy.server_pid == orphan
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        # The kernel did not release the lock: the orphaned "server" still holds it.
        assert alive(orphan)
        lock = claim(tmp_path, 30.0)
        assert isinstance(lock, DataDirLock)
        assert not alive(orphan)
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_rlm_dev_serves_its_data_directory_to_run_and_submit_and_a_killed_dev_is_taken_over(
    tmp_path: Path, sandbox_image: str
) -> None:
    data = tmp_path / "data"
    temporal_dir = data / "temporal"
    env = _env(data)
    path, expected = word_context(tmp_path / "words.txt", 2_000)
    with (tmp_path / "dev.err").open("w") as dev_err:
        dev = subprocess.Popen([RLM, "dev"], env=env, stdout=subprocess.DEVNULL, stderr=dev_err, text=True)
    try:
        holder = _ready_holder(temporal_dir, dev)
        assert holder.pid == dev.pid and holder.shared and holder.server_pid is not None
        using = f"using the rlm dev server at {holder.address} (data dir {data})"

        run = _rlm(env, "run", COUNT, "--context", str(path), "--no-worker")
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"{expected}\n" and using in run.stderr

        submit = _rlm(env, "submit", COUNT, "--context", str(path), "--run-id", "via-dev")
        assert submit.returncode == 0, submit.stderr
        assert using in submit.stderr and f"answer: {expected}" in submit.stdout

        second = _rlm(env, "dev", timeout_s=120)
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert errors == [
            f"error: the Temporal data directory {temporal_dir} is already served by `rlm dev` "
            f"(pid {dev.pid}) at {holder.address}; use that one (rlm commands of this data directory do) "
            "or stop it first"
        ], second.stderr
        assert _servers(temporal_dir) == [holder.server_pid]

        # kill -9 of `rlm dev`: the kernel ends its server too, and the next command starts its own.
        dev.send_signal(signal.SIGKILL)
        dev.wait(10)
        _gone(holder.server_pid, timeout_s=15)
        again = _rlm(env, "run", COUNT, "--context", str(path))
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"{expected}\n" and "using the rlm dev server" not in again.stderr
        assert not alive(holder.server_pid)
        assert _servers(temporal_dir) == []
    finally:
        dev.kill()
        dev.wait(10)
        for pid in _servers(temporal_dir):
            os.killpg(pid, signal.SIGKILL)


def test_a_second_rlm_run_never_starts_a_second_server(tmp_path: Path) -> None:
    # The embedded server of one `rlm run` (here: of this process, not shared) is not for others.
    data = tmp_path / "data"
    env = _env(data)
    context = tmp_path / "c.txt"
    context.write_text("some text")
    with DevServer(DevServerConfig(data_dir=data / "temporal", ui=False)) as server:
        run = _rlm(env, "run", "q?", "--context", str(context))
        submit = _rlm(env, "submit", "q?", "--context", str(context), "--detach")
        assert _servers(data / "temporal") == [server.pid]
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip().splitlines() == [
        f"error: the Temporal data directory {data / 'temporal'} is in use by the embedded server of another "
        f"`rlm run` (pid {os.getpid()}); start `rlm dev` in another shell so that every rlm command of this "
        "data directory shares one server, set TEMPORAL_ADDRESS, or wait for that run to end"
    ]
    assert submit.returncode == 1 and submit.stderr.startswith("error: set TEMPORAL_ADDRESS")


def test_work_given_to_the_start_runs_while_the_server_boots_and_a_failure_in_it_stops_the_server(
    tmp_path: Path,
) -> None:
    # `rlm run` loads its worker's modules there: the server's boot and those imports overlap.
    temporal_dir = tmp_path / "temporal"
    seen: list[tuple[bool, bool]] = []

    def while_booting() -> None:
        holder = read_holder(temporal_dir)
        assert holder is not None
        seen.append((holder.ready, holder.server_pid is not None and alive(holder.server_pid)))

    server = DevServer(DevServerConfig(data_dir=temporal_dir, ui=False))
    try:
        server.start(while_booting)
        assert seen == [(False, True)]  # its process ran, not yet published as ready
        holder = read_holder(temporal_dir)
        assert holder is not None and holder.ready
    finally:
        server.stop()

    def broken() -> None:
        raise RuntimeError("no worker modules")

    with pytest.raises(RuntimeError, match="no worker modules"):
        DevServer(DevServerConfig(data_dir=temporal_dir, ui=False)).start(broken)
    assert _servers(temporal_dir) == []
    with DevServer(DevServerConfig(data_dir=temporal_dir, ui=False)) as server:  # the lock was let go
        assert _servers(temporal_dir) == [server.pid]
