"""The host's temporary directories: those of a host that is gone are removed by the next host, and no
other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox import hostdirs

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
