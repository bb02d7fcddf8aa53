"""The embedded server's ports are picked free and bound a moment later: a start that finds one taken
in between is tried again on other ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator import devstack
from orchestrator.devstack import DevServer, DevServerConfig


def test_a_server_whose_port_is_taken_before_it_binds_starts_again_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        picks = iter([port])
        free_port = devstack.free_port
        monkeypatch.setattr(
            devstack, "free_port", lambda host="127.0.0.1": next(picks, None) or free_port(host)
        )
        config = DevServerConfig(data_dir=tmp_path / "temporal", ui=False)
        with DevServer(config) as server:
            assert server.port != port
            with socket.create_connection(("127.0.0.1", server.port), timeout=5):
                pass
        log = config.log_file.read_text()
        assert log.count("address already in use") >= 1, log[-2000:]
