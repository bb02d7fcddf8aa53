"""The report page in a real headless Chromium (DevTools protocol), on synthetic 1,000-node runs: it loads
without errors or network requests, renders lazily, shows a selected node's cells, and hostile output
stays text."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.report.document import render_html, report_data
from orchestrator.transcripts.clips import Cut
from tests.report.cdp import Page, browser_page
from tests.report.fixtures import HOSTILE, synthetic

NOW = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)


def _write(path: Path, children: int, leaves: int, long_chars: int = 0) -> Path:
    cut = Cut()
    s = synthetic(children, leaves, cut=cut, long_chars=long_chars)
    assert len(s.rows) == 1_000
    path.write_text(
        render_html("rlm report: synth", report_data(s.summary, "acme", s.rows, s.transcripts, cut, NOW))
    )
    return path


async def _text(page: Page, selector: str) -> list[str]:
    return list(
        await page.evaluate(f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent)")
    )


async def _click(page: Page, selector: str) -> None:
    await page.evaluate(f"document.querySelector({json.dumps(selector)}).click()")


async def test_a_thousand_nodes_load_lazily_and_a_selected_node_shows_its_cells(tmp_path: Path) -> None:
    wide = _write(tmp_path / "wide.html", 9, 110, long_chars=5_000)
    fan = _write(tmp_path / "fan.html", 1, 998)

    async with browser_page() as page:
        await page.open(wide)
        # Only the root and its children are built at first.
        assert await page.evaluate("document.querySelectorAll('#tree .row').length") == 10
        assert await _text(page, "#summary h1") == ["run synth"]

        await _click(page, '.row[data-id="synth/0.3"]')
        assert await _text(page, "#detail h2") == ["synth/0.3"]
        assert len(await _text(page, "#detail .cell")) == 2
        codes = await _text(page, "#detail .cell pre.code")
        assert "llm_query_batched" in codes[0] and codes[1] == 'FINAL("42")'
        # The highlighter marked keywords, strings and comments.
        assert (
            await page.evaluate("document.querySelectorAll('#detail .tok-kw, #detail .tok-str').length") > 3
        )
        assert await _text(page, "#detail .tok-com") == ["# split the context and ask a leaf per chunk"]
        # Hostile output is shown as the exact text and never ran.
        assert HOSTILE in await _text(page, "#detail .cell pre.stdout")
        assert await page.evaluate(
            "window.__pwned === undefined && document.querySelectorAll('img').length === 0"
        )
        # The long stderr is cut, with a count.
        assert "3,000 more characters" in " ".join(await _text(page, "#detail .cut"))
        # 110 sub-calls, each linking to its child; following one selects and reveals the leaf.
        assert len(await _text(page, "#detail table.subcalls a.node")) == 110
        await _click(page, '#detail table.subcalls a.node[href="#node=synth%2F0.3.7"]')
        assert await _text(page, "#detail h2") == ["synth/0.3.7"]
        assert await page.evaluate("location.hash") == "#node=synth%2F0.3.7"
        assert await page.evaluate("document.querySelectorAll('#tree .row').length") == 10 + 110
        assert await _text(page, "#tree .row.selected .nid") == ["0.3.7"]
        # Collapsing hides the children again.
        await _click(page, '.row[data-id="synth/0.3"] .toggle')
        assert await page.evaluate("document.querySelector('.row[data-id=\"synth/0.3\"]').nextSibling.hidden")

        # One node with 998 children: they come 200 at a time; a deep link renders as many as it needs.
        await page.open(fan)
        await _click(page, '.row[data-id="synth/0.1"] .toggle')
        assert await page.evaluate("document.querySelectorAll('#tree .row').length") == 2 + 200
        assert await _text(page, "#tree button.more") == ["show 200 more of 798"]
        await page.evaluate("location.hash = '#node=' + encodeURIComponent('synth/0.1.998')")
        await page.evaluate("new Promise(r => setTimeout(r, 50))")
        assert await _text(page, "#detail h2") == ["synth/0.1.998"]
        assert await page.evaluate("document.querySelectorAll('#tree .row').length") == 2 + 998

        assert page.errors == []
        assert page.requests == [wide.as_uri(), fan.as_uri()]
