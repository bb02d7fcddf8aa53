"""ops/screenshots.py end to end: a real run on the embedded dev server, photographed with Chromium.

Slow (about a minute, and Chromium is installed from Debian when missing), so it runs only with
RLM_TEST_SLOW=1.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WEB_UI = (1280, 800)
SIZES = {
    "workflows.png": WEB_UI,
    "root.png": WEB_UI,
    "details.png": WEB_UI,
    "relationships.png": WEB_UI,
    "paused.png": WEB_UI,
    "aborted-root.png": WEB_UI,
    "report.png": (1280, 1100),  # taller: the selected node's code, output and sub-calls
}


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


@pytest.mark.slow
def test_screenshots_of_a_run_tree(tmp_path: Path) -> None:
    out = tmp_path / "shots"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "ops" / "screenshots.py"), "--out", str(out), "--run-id", "shots-test"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == set(SIZES)
    for name, size in SIZES.items():
        path = out / name
        assert png_size(path) == size
        # A page that did not render (blank or an error) compresses to a few KB.
        assert path.stat().st_size > 30_000, name
    # The run answered (6,000 lines, every seventh an ERROR) and the paused run was aborted.
    assert "answer: 858" in proc.stderr
    assert "aborting shots-test-paused" in proc.stderr


def test_committed_screenshots_are_small_pngs() -> None:
    shots = sorted((ROOT / "docs" / "screenshots").glob("*.png"))
    assert {p.name for p in shots} == set(SIZES)
    for path in shots:
        assert png_size(path) == SIZES[path.name]
        assert path.stat().st_size < 300_000, path.name
    runbook = (ROOT / "ops" / "RUNBOOK.md").read_text()
    for path in shots:
        assert f"(../docs/screenshots/{path.name})" in runbook
