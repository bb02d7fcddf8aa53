"""``rlm report`` on a real depth-2 run (dev server, Docker sandbox, PostgreSQL, scripted model), opened in
headless Chromium through the DevTools protocol; and its bad inputs, each one ``error:`` line, exit 1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from orchestrator.workflows.types import Limits
from tests.ops.jobs.cli import Done, rlm
from tests.orchestrator.harness import Harness, Outcome, word_context
from tests.report.cdp import browser_page


async def report(env: dict[str, str], *args: str) -> Done:
    return await rlm(env, "report", *args, timeout_s=180)


@pytest.fixture(scope="module")
async def depth_two(harness: Harness, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    path, _ = word_context(tmp_path_factory.mktemp("report") / "words.txt", 4_000)
    out = await harness.run(
        "How many times does the word 'ERROR' appear?",
        path,
        model="scripted/recurse",
        sub_model="scripted/recurse",
        limits=Limits(max_depth=2, heartbeat_timeout_s=10),
    )
    assert out.result.status == "completed", out.result.error
    return out


async def test_report_of_a_depth_two_run_opens_in_chromium(
    depth_two: Outcome, cli_env: dict[str, str], tmp_path: Path
) -> None:
    page_path = tmp_path / "run.html"

    done = await report(cli_env, depth_two.run_id, "-o", str(page_path))

    assert done.code == 0, done.err
    assert done.out == ""
    assert done.err.startswith(f"wrote {page_path} ({len(depth_two.tree)} nodes")
    rows = depth_two.tree
    root = rows[0]
    mid = next(r for r in rows if r.depth == 1 and any(c.parent_id == r.node_id for c in rows))
    mid_children = [r.node_id for r in rows if r.parent_id == mid.node_id]
    async with browser_page() as page:
        await page.open(page_path)
        assert (
            await page.evaluate("document.querySelector('#summary h1').textContent")
            == f"run {depth_two.run_id}"
        )
        # The root is open: its row and its children's, nothing deeper yet.
        shown = await page.evaluate("[...document.querySelectorAll('#tree .row')].map(r => r.dataset.id)")
        assert shown == [root.node_id] + [r.node_id for r in rows if r.parent_id == root.node_id]

        await page.evaluate(f"document.querySelector('.row[data-id={json.dumps(mid.node_id)}]').click()")
        detail = await page.evaluate(
            """({
              id: document.querySelector('#detail h2').textContent,
              code: [...document.querySelectorAll('#detail .cell pre.code')].map(e => e.textContent),
              out: [...document.querySelectorAll('#detail .cell pre.stdout')].map(e => e.textContent),
              children: [...document.querySelectorAll('#detail table.subcalls a.node')]
                .map(a => decodeURIComponent(a.getAttribute('href').slice(6))),
              ended: document.querySelector('#detail dd[data-key="ended"]').textContent,
            })"""
        )
        assert detail["id"] == mid.node_id
        assert detail["code"] and any("rlm_query" in code for code in detail["code"])
        assert detail["children"] == mid_children
        assert detail["ended"].startswith("answered")
        # Following a sub-call's link selects that child and opens the path to it.
        await page.evaluate("document.querySelector('#detail table.subcalls a.node').click()")
        assert await page.evaluate("document.querySelector('#detail h2').textContent") == mid_children[0]
        assert (
            await page.evaluate("document.querySelector('#tree .row.selected').dataset.id") == mid_children[0]
        )
        assert page.errors == []
        assert page.requests == [page_path.as_uri()]


async def test_bad_input_is_one_line_and_exit_1(
    depth_two: Outcome, cli_env: dict[str, str], tmp_path: Path
) -> None:
    run = depth_two.run_id
    nowhere = tmp_path / "nowhere"
    cases = {
        "unknown run": (
            ["no-such-run", "-o", str(tmp_path / "a.html")],
            "error: run 'no-such-run' does not exist",
        ),
        "missing directory": (
            [run, "-o", str(nowhere / "a.html")],
            f"error: cannot write {nowhere / 'a.html'}: directory {nowhere} does not exist",
        ),
        "a directory": ([run, "-o", str(tmp_path)], f"error: -o {tmp_path} is a directory"),
        "unwritable": ([run, "-o", "/proc/rlm-report.html"], "error: cannot write /proc/rlm-report.html: "),
        "other tenant": (
            [run, "-o", str(tmp_path / "b.html"), "--tenant", "someone-else"],
            f"error: run '{run}' does not belong to tenant 'someone-else'",
        ),
    }
    results = await asyncio.gather(*(report(cli_env, *args) for args, _ in cases.values()))
    for (name, (_, expected)), done in zip(cases.items(), results, strict=True):
        assert done.code == 1, (name, done)
        assert done.out == "", name
        assert len(done.err.strip().splitlines()) == 1, (name, done.err)
        assert done.err.startswith(expected), (name, done.err)
    assert not (tmp_path / "a.html").exists() and not (tmp_path / "b.html").exists()
    # The run's own tenant is accepted.
    ok = await report(cli_env, run, "-o", str(tmp_path / "c.html"), "--tenant", "default")
    assert ok.code == 0, ok.err
