"""Screenshots of the Temporal Web UI showing one run's recursion tree, for ops/RUNBOOK.md.

Starts `rlm dev` (the embedded Temporal dev server with its Web UI, and a worker) in a fresh data
directory, or uses a running server when TEMPORAL_ADDRESS and TEMPORAL_UI_URL are set; runs a small
real run with the scripted model (a depth-2 `recurse` tree: root, two `rlm_query` children, four
leaves) over a generated context; then photographs the UI with headless Chromium:

- workflows.png      the workflow list filtered by the run's search attribute (`RlmRunId = "..."`)
- root.png           the root workflow's page (input, result, history)
- details.png        its User Metadata tab: summary (the query's first line), details, current details
- relationships.png  the root's relationships view: the tree of child workflows
- paused.png         a second run started with a budget too small for its first model call, found
                     with `RlmTenant = "acme" AND RlmStatus = "paused_budget"`; aborted afterwards
- report.png         `rlm report` of the first run opened in Chromium, a depth-1 node selected
- aborted-root.png   that run's root's User Metadata after the abort: the current details say why it
                     ended

Chromium is installed from Debian (`apt-get install chromium`) when missing, which needs root.
Everything the script started (dev server, worker, Chromium) is stopped before it exits.

    .venv/bin/python ops/screenshots.py [--out docs/screenshots] [--keep-data]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from report_screenshot import ReportShotError, screenshot_report

import sandbox

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RLM = VENV_BIN / "rlm"
TEMPORAL = VENV_BIN / "temporal"
NAMESPACE = "default"
WINDOW = "1280,800"
# A depth-2 tree: root -> two rlm_query children -> two leaves each; the children use the same policy.
MODEL = "scripted/recurse?min_split=1000"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


class ScreenshotError(RuntimeError):
    """A step failed; the message says which and what to look at."""


@dataclass(frozen=True)
class Stack:
    address: str
    ui_url: str


def say(message: str) -> None:
    print(f"[screenshots] {message}", file=sys.stderr, flush=True)


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.geteuid() != 0:
        raise ScreenshotError(
            "chromium is not installed; run `apt-get install chromium` as root, or rerun as root"
        )
    say("installing chromium from Debian (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, stdout=subprocess.DEVNULL
    )
    found = shutil.which("chromium")
    if not found:
        raise ScreenshotError("apt-get installed chromium but no `chromium` binary is on PATH")
    return found


def write_context(path: Path) -> None:
    """About 6,000 log lines, every seventh an ERROR: enough text for the recursion to split twice."""
    lines = [
        f"10:{i // 60 % 60:02d}:{i % 60:02d} {'ERROR' if i % 7 == 0 else 'INFO'} worker-{i % 5} step {i}"
        for i in range(6000)
    ]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)


def kill_leftovers(marker: str) -> None:
    """End processes started by this script that outlived ``rlm dev`` (its Temporal server runs in a
    session of its own): those whose command line names this script's private work directory."""
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (proc_dir / "cmdline").read_bytes().decode(errors="replace"):
                say(f"stopping leftover process {proc_dir.name}")
                os.kill(int(proc_dir.name), signal.SIGKILL)


@contextlib.contextmanager
def dev_stack(env: Mapping[str, str], log_path: Path) -> Iterator[Stack]:
    """`rlm dev` in its own process group; yields once it prints the server and UI addresses."""
    log = log_path.open("w+b")
    proc = subprocess.Popen(
        [str(RLM), "dev"],
        env=dict(env),
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        pattern = re.compile(r"Temporal dev server at (\S+); Web UI at (\S+)")
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            match = pattern.search(text)
            if match and "worker serving task queue" in text:
                yield Stack(address=match.group(1), ui_url=match.group(2))
                return
            if proc.poll() is not None:
                raise ScreenshotError(f"`rlm dev` exited with code {proc.returncode}; see {log_path}")
            time.sleep(0.2)
        raise ScreenshotError(f"`rlm dev` did not report its addresses within 120 s; see {log_path}")
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
        kill_leftovers(str(log_path.parent))


def rlm(env: Mapping[str, str], *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [str(RLM), *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise ScreenshotError(
            f"`rlm {' '.join(args[:2])}` exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def run_tree(env: Mapping[str, str], context: Path, run_id: str) -> None:
    if "acme" not in rlm(env, "tenant", "show"):
        rlm(env, "tenant", "create", "acme", "--budget-usd", "10")
    say(f"running {run_id} (scripted/recurse, depth 2)")
    out = rlm(
        env,
        "run",
        "How many lines contain 'ERROR'?",
        "--context",
        str(context),
        "--model",
        MODEL,
        "--sub-model",
        MODEL,
        "--max-depth",
        "2",
        "--tenant",
        "acme",
        "--run-id",
        run_id,
        "--no-worker",
        "--deadline",
        "300",
        timeout=360,
    )
    say(f"answer: {out.strip().splitlines()[0] if out.strip() else '(none)'}")


def start_paused_run(env: Mapping[str, str], context: Path, run_id: str) -> None:
    """A run whose budget cannot cover one model call: its root pauses as ``paused_budget`` at once."""
    say(f"starting {run_id} with a budget of $0.0001 (it pauses)")
    rlm(
        env,
        "run",
        "How many lines contain 'ERROR'?",
        "--context",
        str(context),
        "--model",
        MODEL,
        "--sub-model",
        MODEL,
        "--tenant",
        "acme",
        "--run-id",
        run_id,
        "--budget-usd",
        "0.0001",
        "--detach",
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if "paused_budget" in rlm(env, "status", run_id):
            return
        time.sleep(0.5)
    raise ScreenshotError(f"{run_id} did not pause for budget within 120 s; see `rlm status {run_id}`")


def abort_run(env: Mapping[str, str], run_id: str) -> None:
    say(f"aborting {run_id}")
    rlm(env, "abort", run_id)
    deadline = time.monotonic() + 60
    while "paused_budget" in rlm(env, "status", run_id):
        if time.monotonic() > deadline:
            raise ScreenshotError(f"{run_id} is still paused 60 s after `rlm abort`")
        time.sleep(0.5)


def remove_sandboxes(run_ids: list[str]) -> None:
    """Sandbox containers of these runs that a killed worker left behind (normally none)."""
    for run_id in run_ids:
        removed = sandbox.reap(labels={"run": run_id})
        if removed:
            say(f"removed {removed} leftover sandbox container(s) of {run_id}")


def temporal_run_id(stack: Stack, workflow_id: str) -> str:
    proc = subprocess.run(
        [
            str(TEMPORAL),
            "workflow",
            "describe",
            "--address",
            stack.address,
            "--namespace",
            NAMESPACE,
            "--workflow-id",
            workflow_id,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise ScreenshotError(f"temporal workflow describe {workflow_id} failed: {proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    run_id: str = info["workflowExecutionInfo"]["execution"]["runId"]
    return run_id


def shoot(chromium: str, url: str, out: Path, profile_root: Path, budget_ms: int) -> None:
    """One screenshot with a fresh profile; the virtual time budget lets the JS app fetch and render."""
    with tempfile.TemporaryDirectory(dir=profile_root, prefix="profile-") as profile:
        cmd = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=180, check=False, start_new_session=True
        )
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size < 10_000:
        raise ScreenshotError(
            f"chromium could not capture {url}: exit {proc.returncode} {proc.stderr.strip()[-800:]}"
        )
    say(f"{out} ({out.stat().st_size // 1024} KiB) <- {url}")


def list_url(ui_url: str, query: str) -> str:
    return f"{ui_url}/namespaces/{NAMESPACE}/workflows?query={urllib.parse.quote(query, safe='')}"


def ui_pages(ui_url: str, run_id: str, workflow_id: str, temporal_run: str) -> dict[str, str]:
    wid = urllib.parse.quote(workflow_id, safe="")
    base = f"{ui_url}/namespaces/{NAMESPACE}/workflows"
    return {
        "workflows.png": list_url(ui_url, f'RlmRunId = "{run_id}"'),
        "root.png": f"{base}/{wid}/{temporal_run}/history",
        "details.png": f"{base}/{wid}/{temporal_run}/user-metadata",
        "relationships.png": f"{base}/{wid}/{temporal_run}/relationships",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--run-id", default=f"ops-screens-{time.strftime('%Y%m%d-%H%M%S')}")
    parser.add_argument(
        "--budget-ms", type=int, default=15000, help="Chromium's virtual time budget per page"
    )
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args(argv)
    try:
        chromium = chromium_binary()
        args.out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="rlm-screens-"))
        work.chmod(0o755)
        env = {
            **os.environ,
            "RLM_DATA_DIR": str(work / "data"),
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "RLM_LOG_LEVEL": os.environ.get("RLM_LOG_LEVEL", "warning"),
        }
        env.pop("RLM_DATABASE_URL", None)
        context = work / "app.log"
        write_context(context)
        try:
            with contextlib.ExitStack() as stack_cm:
                if os.environ.get("TEMPORAL_ADDRESS") and os.environ.get("TEMPORAL_UI_URL"):
                    stack = Stack(os.environ["TEMPORAL_ADDRESS"], os.environ["TEMPORAL_UI_URL"].rstrip("/"))
                    say(f"using the running server {stack.address}, UI {stack.ui_url}")
                else:
                    env.pop("TEMPORAL_ADDRESS", None)
                    say("starting `rlm dev`")
                    stack = stack_cm.enter_context(dev_stack(env, work / "rlm-dev.log"))
                    say(f"dev server {stack.address}, UI {stack.ui_url}")
                run_env = {**env, "TEMPORAL_ADDRESS": stack.address, "TEMPORAL_UI_URL": stack.ui_url}
                run_tree(run_env, context, args.run_id)
                screenshot_report(chromium, args.run_id, args.out / "report.png", work, env=run_env)
                root = f"{args.run_id}/0"
                pages = ui_pages(stack.ui_url, args.run_id, root, temporal_run_id(stack, root))
                for name, url in pages.items():
                    shoot(chromium, url, args.out / name, work, args.budget_ms)
                paused = f"{args.run_id}-paused"
                start_paused_run(run_env, context, paused)
                try:
                    query = 'RlmTenant = "acme" AND RlmStatus = "paused_budget"'
                    shoot(
                        chromium, list_url(stack.ui_url, query), args.out / "paused.png", work, args.budget_ms
                    )
                finally:
                    abort_run(run_env, paused)
                # The held root's own page once aborted (a running workflow's page never lets Chromium's
                # virtual time settle): its summary, and current details that say why it ended.
                held = f"{paused}/0"
                page = ui_pages(stack.ui_url, paused, held, temporal_run_id(stack, held))["details.png"]
                shoot(chromium, page, args.out / "aborted-root.png", work, args.budget_ms)
        finally:
            remove_sandboxes([args.run_id, f"{args.run_id}-paused"])
            if args.keep_data:
                say(f"kept {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    except (
        ScreenshotError,
        ReportShotError,
        subprocess.CalledProcessError,
        subprocess.TimeoutExpired,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
