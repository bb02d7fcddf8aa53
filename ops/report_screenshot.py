"""Screenshot of `rlm report` for the docs: a run's report opened in headless Chromium, one node selected.

Reads the run from the store the environment names (RLM_DATABASE_URL / RLM_DATA_DIR, as `rlm` does),
writes the report next to the screenshot's work files, selects NODE (default: the first child of the root
that has children of its own, so the page shows code, output and sub-calls) and saves the PNG.
ops/screenshots.py calls ``screenshot_report`` after its depth-2 run; it runs on its own too:

    .venv/bin/python ops/report_screenshot.py RUN [--node NODE] [--out docs/screenshots/report.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Taller than the Web UI shots: the selected node's code, output and sub-calls fit on the page.
WINDOW = "1280,1100"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class ReportShotError(RuntimeError):
    """A step failed; the message says which."""


def _write_report(run_id: str, path: Path, env: Mapping[str, str] | None) -> str:
    """Build the report in a child process (so the store of ``env`` is used) and return the node to show."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.cli.common import open_store\n"
        "from orchestrator.report.build import build_report, write_report\n"
        "from orchestrator.runs import run_tree\n"
        "from orchestrator.settings import load_settings\n"
        "engine, sessions = open_store(load_settings())\n"
        "page = build_report(sessions, sys.argv[1], tenant=None, full=False)\n"
        "write_report(Path(sys.argv[2]), page.html)\n"
        "rows = run_tree(sessions, sys.argv[1])\n"
        "parents = {r.parent_id for r in rows}\n"
        "pick = [r.node_id for r in rows if r.depth == 1 and r.node_id in parents] or [rows[0].node_id]\n"
        "print(pick[0])\n"
        "engine.dispose()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, run_id, str(path)],
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise ReportShotError(f"building the report of {run_id} failed: {proc.stderr.strip()[-1500:]}")
    return proc.stdout.strip().splitlines()[-1]


def screenshot_report(
    chromium: str,
    run_id: str,
    out: Path,
    work: Path,
    env: Mapping[str, str] | None = None,
    node: str = "",
    window: str = WINDOW,
) -> Path:
    """Write ``run_id``'s report under ``work``, photograph it with ``node`` selected into ``out``."""
    page = work / "report.html"
    picked = _write_report(run_id, page, env)
    url = page.resolve().as_uri() + "#node=" + urllib.parse.quote(node or picked, safe="")
    with tempfile.TemporaryDirectory(dir=work, prefix="report-profile-") as profile:
        cmd = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window}",
            "--virtual-time-budget=3000",
            f"--screenshot={out}",
            url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, check=False, start_new_session=True
        )
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size < 10_000:
        raise ReportShotError(
            f"chromium could not capture {url}: exit {proc.returncode} {proc.stderr[-800:]}"
        )
    print(f"[report-screenshot] {out} ({out.stat().st_size // 1024} KiB) <- {url}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--node", default="", help="node to select (default: a depth-1 node with children)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "report.png")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("error: chromium is not installed; `apt-get install chromium` as root", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rlm-report-shot-") as work:
        try:
            screenshot_report(chromium, args.run_id, args.out.resolve(), Path(work), node=args.node)
        except (ReportShotError, subprocess.TimeoutExpired) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
