"""Hostile code against the real Docker engine: every case ends with a clear result and a session that
still works (and still holds the state from before the hostile cell)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import docker

from sandbox import SandboxLimits, Session
from tests.sandbox.helpers import OpenSession, no_subcalls


def _still_works(session: Session, expected_x: str = "'kept'") -> None:
    result = session.execute("print(repr(x))\ny = 6 * 7\nprint(y)", no_subcalls)
    assert result.status == "ok", (result.message, result.traceback)
    assert result.stdout == f"{expected_x}\n42\n"


def _prepared(open_docker: OpenSession, limits: SandboxLimits | None = None) -> Session:
    session = open_docker(limits=limits or SandboxLimits())
    assert session.execute("x = 'kept'", no_subcalls).status == "ok"
    return session


def test_memory_bomb_is_reported_as_oom_and_state_restored(open_docker: OpenSession) -> None:
    session = _prepared(open_docker, SandboxLimits(memory_bytes=256 << 20))
    before = session.runtime_id
    result = session.execute("x = 'changed'\nbomb = 'a' * 10**10", no_subcalls)
    assert result.status == "oom"
    assert result.message == "cell ran out of memory (limit 256 MiB); state restored to before the cell"
    assert result.variables == {"x": "str"}
    assert session.runtime_id != before
    _still_works(session)


def test_fork_bomb_is_contained(open_docker: OpenSession, docker_client: docker.DockerClient) -> None:
    session = _prepared(open_docker, SandboxLimits(pids=64, cell_timeout_s=10))
    result = session.execute("import os\nwhile True:\n    os.fork()", no_subcalls)
    # The pids cap makes fork() fail inside the cell, which then raises.
    assert result.status == "error", result.message
    assert result.traceback is not None and "BlockingIOError" in result.traceback
    _still_works(session)
    stats = docker_client.api.inspect_container(session.runtime_id)
    assert stats["HostConfig"]["PidsLimit"] == 64


def test_infinite_loop_times_out_and_state_is_restored(open_docker: OpenSession) -> None:
    session = _prepared(open_docker, SandboxLimits(cell_timeout_s=1.5))
    result = session.execute("x = 'changed'\nwhile True:\n    pass", no_subcalls)
    assert result.status == "timeout"
    assert result.message == "cell timed out after 1.5 s; state restored to before the cell"
    assert result.snapshot is not None
    _still_works(session)


def test_network_is_unreachable(open_docker: OpenSession) -> None:
    session = _prepared(open_docker)
    result = session.execute(
        'import socket\nsocket.create_connection(("1.1.1.1", 53), timeout=5)', no_subcalls
    )
    assert result.status == "error"
    assert result.traceback is not None and "OSError" in result.traceback
    assert "unreachable" in result.traceback.lower()
    ifaces = session.execute("import os\nprint(sorted(os.listdir('/sys/class/net')))", no_subcalls)
    assert ifaces.stdout == "['lo']\n"
    _still_works(session)


def test_root_filesystem_is_read_only_and_tmp_is_capped(open_docker: OpenSession) -> None:
    session = _prepared(open_docker, SandboxLimits(tmpfs_bytes=8 << 20))
    for path in ("/evil", "/etc/evil", "/opt/rlm/evil.py"):
        result = session.execute(f"open({path!r}, 'w').write('x')", no_subcalls)
        assert result.status == "error"
        assert result.traceback is not None
        assert "Read-only file system" in result.traceback or "Permission denied" in result.traceback
    fill = session.execute("with open('/tmp/big', 'wb') as f:\n    f.write(b'0' * (16 << 20))", no_subcalls)
    assert fill.status == "error"
    assert fill.traceback is not None and "No space left on device" in fill.traceback
    whoami = session.execute("import os\nprint(os.getuid(), os.getgid())", no_subcalls)
    assert whoami.stdout == "10001 10001\n"
    caps = session.execute(
        "print([l for l in open('/proc/self/status') if l.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])",
        no_subcalls,
    )
    assert "CapEff:\\t0000000000000000" in caps.stdout
    assert "CapBnd:\\t0000000000000000" in caps.stdout
    assert "NoNewPrivs:\\t1" in caps.stdout
    _still_works(session)


def test_host_files_and_environment_are_out_of_reach(open_docker: OpenSession, tmp_path: Path) -> None:
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text("host secret 5f1d")
    os.environ["RLM_TEST_HOST_SECRET"] = "env secret 9c2b"
    try:
        session = _prepared(open_docker)
        read = session.execute(f"print(open({str(secret_file)!r}).read())", no_subcalls)
        env = session.execute("import os\nprint(dict(os.environ))", no_subcalls)
        proc1 = session.execute("print(open('/proc/1/environ', 'rb').read())", no_subcalls)
    finally:
        del os.environ["RLM_TEST_HOST_SECRET"]
    assert read.status == "error"
    assert read.traceback is not None and "FileNotFoundError" in read.traceback
    assert env.status == "ok"
    assert "secret" not in env.stdout and "RLM_" not in env.stdout
    assert "secret" not in (proc1.stdout + (proc1.traceback or ""))
    mounts = session.execute("print(open('/proc/self/mounts').read())", no_subcalls).stdout
    # Host-backed mounts (a device as source): only the engine's own ones, read-only, and the socket.
    host_backed = {
        fields[1]: fields[3].split(",")[0]
        for fields in (line.split() for line in mounts.splitlines() if line.strip())
        if fields[0].startswith("/dev/")
    }
    assert host_backed == {
        "/usr/sbin/docker-init": "ro",
        "/etc/resolv.conf": "ro",
        "/etc/hostname": "ro",
        "/etc/hosts": "ro",
        "/run/rlm-control.sock": "rw",
    }
    _still_works(session)


def test_printing_50_mb_is_truncated_and_host_memory_stays_bounded(open_docker: OpenSession) -> None:
    session = _prepared(open_docker)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    received_before = session.bytes_received
    result = session.execute("for _ in range(50):\n    print('z' * (1 << 20))", no_subcalls)
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert result.status == "ok"
    total = 50 * ((1 << 20) + 1)
    assert result.stdout_cut == total - 20_000
    assert result.stdout.startswith("z" * 10_000) and result.stdout.endswith("z" * 9_999 + "\n")
    assert session.bytes_received - received_before < 100_000
    assert rss_growth_kib < 30 * 1024
    _still_works(session)


def test_docker_kill_between_cells_restarts_with_the_last_snapshot(
    open_docker: OpenSession, docker_client: docker.DockerClient
) -> None:
    session = _prepared(open_docker)
    docker_client.containers.get(session.runtime_id).kill()
    result = session.execute("print(x)", no_subcalls)
    assert result.status == "ok"
    assert result.stdout == "kept\n"
    assert result.message is not None and "had died between cells" in result.message


def test_exiting_the_interpreter_is_a_crash_with_state_restored(open_docker: OpenSession) -> None:
    session = _prepared(open_docker)
    result = session.execute("x = 'changed'\nimport os\nos._exit(3)", no_subcalls)
    assert result.status == "crashed"
    assert result.message == (
        "the sandbox died during the cell: container exited with code 3; state restored to before the cell"
    )
    _still_works(session)
    assert session.execute("import sys\nsys.exit(1)", no_subcalls).status == "error"
    _still_works(session)


def test_forged_frames_on_the_control_socket_are_a_crash_not_a_host_allocation(
    open_docker: OpenSession,
) -> None:
    session = _prepared(open_docker)
    code = (
        "import gc, socket, struct\nx = 'changed'\n"
        "ctl = [o for o in gc.get_objects() if isinstance(o, socket.socket)][0]\n"
        "ctl.sendall(struct.pack('>II', 2**31, 0))\nimport time\ntime.sleep(5)"
    )
    result = session.execute(code, no_subcalls)
    assert result.status == "crashed"
    assert result.message is not None
    assert "the runtime broke the protocol (peer announced a message of 2147483648 bytes" in result.message
    _still_works(session)


def test_huge_exception_message_is_truncated(open_docker: OpenSession) -> None:
    session = _prepared(open_docker)
    result = session.execute("raise ValueError('v' * 10**8)", no_subcalls)
    assert result.status == "error"
    assert result.traceback is not None
    assert len(result.traceback) < 20_100 and "characters cut" in result.traceback
    _still_works(session)


def test_oversized_subcall_batch_is_refused_in_the_cell(open_docker: OpenSession) -> None:
    session = _prepared(open_docker, SandboxLimits(message_bytes=1 << 20))
    result = session.execute("llm_query_batched(['p' * 400_000] * 3)", no_subcalls)
    assert result.status == "error"
    assert result.traceback is not None and "split them into smaller batches" in result.traceback
    _still_works(session)
