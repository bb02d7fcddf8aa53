"""The host's temporary directories: those of a host that is gone are removed by the next host, and no
other."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest import MonkeyPatch

from sandbox import hostdirs
from sandbox.pids import alive

MAKE = "from sandbox import hostdirs\nprint(hostdirs.make(hostdirs.CONTROL), hostdirs.make(hostdirs.WORKDIR))"


def _host(tmp: Path) -> tuple[Path, Path]:
    """The directories (one of each kind) that a host process made in ``tmp`` before it died without
    removing them."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run([sys.executable, "-c", MAKE], env=env, capture_output=True, text=True, check=True)
    control, workdir = out.stdout.strip().splitlines()[-1].split()
    return Path(control), Path(workdir)


def _directory(path: Path, host: str | None) -> Path:
    path.mkdir()
    if host is not None:
        (path / hostdirs.HOST_FILE).write_text(host)
    return path


def test_a_gone_hosts_directories_go_and_no_other(tmp_path: Path) -> None:
    control, workdir = _host(tmp_path)
    assert control.name.startswith(hostdirs.CONTROL) and workdir.name.startswith(hostdirs.WORKDIR)
    ns, dead_pid = (control / hostdirs.HOST_FILE).read_text().split()
    assert ns == hostdirs.namespace()
    kept = [
        _directory(tmp_path / f"{hostdirs.CONTROL}live", f"{ns} {os.getpid()}"),  # a live host's
        _directory(tmp_path / f"{hostdirs.CONTROL}other", f"4026500000 {dead_pid}"),  # another namespace's
        _directory(tmp_path / f"{hostdirs.WORKDIR}unjudged", f"unknown {dead_pid}"),  # no namespace showed
        _directory(tmp_path / f"{hostdirs.CONTROL}new", None),  # its host has not written the file yet
        _directory(tmp_path / "rlm-notours", f"{ns} {dead_pid}"),  # not a name this package makes
    ]

    # The next host's first directory sweeps; the directories it makes are its own (and it dies too).
    survivors = _host(tmp_path)

    assert not control.exists() and not workdir.exists()
    assert sorted(tmp_path.iterdir()) == sorted([*kept, *survivors])


def test_a_killed_host_not_yet_reaped_counts_as_gone(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    waits = "import time\n" + MAKE + "\nimport sys; sys.stdout.flush(); time.sleep(600)"
    host = subprocess.Popen([sys.executable, "-c", waits], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        made = [Path(p) for p in host.stdout.readline().split()]
        assert len(made) == 2 and all(p.parent == tmp_path for p in made)
        assert hostdirs.sweep() == 0  # the host runs
        host.kill()
        _wait_for_zombie(host.pid)
        assert not alive(host.pid)

        assert hostdirs.sweep() == 2
        assert not any(p.exists() for p in made)
    finally:
        host.kill()
        host.wait()


def _wait_for_zombie(pid: int) -> None:
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(500):
        if stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not become a zombie")
