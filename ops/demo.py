"""Interim demo until `rlm run` lands: the image runs, the database answers, the dev server starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import psycopg

from sandbox.imagebuild import ensure_image


def main() -> None:
    image = ensure_image()
    out = docker.from_env().containers.run(
        image,
        ["python3", "-c", "import sys; print(sys.version.split()[0])"],
        network_mode="none",
        read_only=True,
        cap_drop=["ALL"],
        remove=True,
    )
    print(f"sandbox  {image}: python {out.decode().strip()} (network none, read-only, non-root)")
    url = os.environ.get("RLM_DEMO_PG", "postgresql://rlm:rlm@127.0.0.1:5432/rlm")
    with psycopg.connect(url, connect_timeout=5) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    print(f"store    PostgreSQL {version[0] if version else '?'} answers as rlm")
    temporal = Path(sys.executable).parent / "temporal"
    proc = subprocess.Popen(
        [
            str(temporal),
            "server",
            "start-dev",
            "--headless",
            "--port",
            "17233",
            "--db-filename",
            "/tmp/rlm-demo-temporal.sqlite3",
            "--log-level",
            "error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", 17233)) == 0:
                    print("temporal dev server answers on 127.0.0.1:17233")
                    break
            time.sleep(0.2)
        else:
            raise SystemExit("temporal dev server did not start")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
