"""The host's temporary directories: those of a host that is gone are removed by the next host, and no
other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox import hostdirs

MAKE = "from sandbox import hostdirs\nprint(hostdirs.make(hostdirs.{kind}))"


def _host(tmp: Path, kind: str) -> Path:
    """The directory of ``kind`` that a host process made in ``tmp`` before it died without removing it."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    out = subprocess.run(
        [sys.executable, "-c", MAKE.format(kind=kind)], env=env, capture_output=True, text=True, check=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def test_a_gone_hosts_directories_go_and_no_other(tmp_path: Path) -> None:
    control, workdir = _host(tmp_path, "CONTROL"), _host(tmp_path, "WORKDIR")
    assert control.name.startswith(hostdirs.CONTROL) and workdir.name.startswith(hostdirs.WORKDIR)
    dead_pid = int(control.name.split("-")[-2])
    ns = hostdirs.namespace()
    kept = [
        tmp_path / f"{hostdirs.CONTROL}{ns}-{os.getpid()}-live",  # a live host's
        tmp_path / f"{hostdirs.CONTROL}4026500000-{dead_pid}-other",  # another pid namespace's
        tmp_path / f"{hostdirs.WORKDIR}unknown-{dead_pid}-unjudged",  # written where no namespace showed
        tmp_path / "rlm-sandbox-notours",  # not a name this package makes
    ]
    for path in kept:
        path.mkdir()

    # The next host's first directory sweeps; the directory it makes is its own (and it dies too).
    survivor = _host(tmp_path, "CONTROL")

    assert not control.exists() and not workdir.exists()
    assert sorted(tmp_path.iterdir()) == sorted([*kept, survivor])
