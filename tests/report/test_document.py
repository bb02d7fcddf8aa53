"""The report document from fixture data (no store, no browser): escaping, the page's integrity, cutting."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from orchestrator.report.document import embed_json, render_html, report_data
from orchestrator.transcripts.clips import DEFAULT_CUT_CHARS, FULL, Cut
from tests.report.fixtures import HOSTILE, synthetic

NOW = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
CUT = Cut()


def _page(
    children: int = 2, leaves: int = 3, *, cut: Cut = CUT, long_chars: int = 0
) -> tuple[dict[str, Any], str]:
    s = synthetic(children, leaves, cut=cut, long_chars=long_chars)
    data = report_data(s.summary, "acme", s.rows, s.transcripts, cut, NOW)
    return data, render_html("rlm report: synth", data)


def _embedded(page: str) -> str:
    match = re.search(r'<script type="application/json" id="rlm-data">(.*?)</script>', page, re.S)
    assert match is not None
    return match.group(1)


def test_embedded_json_has_no_markup_and_reads_back_the_same() -> None:
    value = {"out": HOSTILE, "nested": [HOSTILE, {"k": "<!--"}]}

    text = embed_json(value)

    assert not set("<>&") & set(text)
    assert "\u2028" not in text
    assert json.loads(text) == value


def test_hostile_output_stays_inside_the_data_element() -> None:
    data, page = _page()

    # Exactly the page's two script elements, whatever the nodes printed; the data parses back whole.
    assert len(re.findall(r"<script", page, re.I)) == 2
    assert "<img" not in page
    assert json.loads(_embedded(page)) == json.loads(json.dumps(data))
    assert "<!--" not in page
    # Slot markers inside the data are not filled in: the page is rendered in one pass.
    assert json.loads(_embedded(page))["run"]["answer"]["text"] == HOSTILE


def test_csp_allows_exactly_the_inline_script_and_style() -> None:
    _, page = _page()

    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    script = re.search(r"<script>(.*)</script>", page, re.S)
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert script is not None and style is not None

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    directives = [d.strip() for d in csp.group(1).split(";")]
    assert directives == [
        "default-src 'none'",
        f"script-src {digest(script.group(1))}",
        f"style-src {digest(style.group(1))}",
    ]
    assert not re.search(r"(src|href)=\"?https?:", page)


def test_long_texts_are_cut_with_their_full_length_and_full_keeps_them() -> None:
    long = 3 * DEFAULT_CUT_CHARS
    data, _ = _page(long_chars=long)
    stderr = data["transcripts"]["synth/0.1"]["iterations"][0]["cells"][0]["stderr"]
    assert stderr == {"text": "x" * DEFAULT_CUT_CHARS, "chars": long}
    assert data["run"]["cut_chars"] == DEFAULT_CUT_CHARS

    whole, page = _page(long_chars=long, cut=FULL)
    stderr = whole["transcripts"]["synth/0.1"]["iterations"][0]["cells"][0]["stderr"]
    assert stderr == {"text": "x" * long, "chars": long}
    assert whole["run"]["cut_chars"] is None
    assert "x" * long in page


def test_tree_rows_are_in_tree_order_with_cost_and_duration() -> None:
    data, _ = _page(children=2, leaves=2)

    ids = [n["id"] for n in data["nodes"]]
    assert ids == [
        "synth/0",
        "synth/0.1",
        "synth/0.1.1",
        "synth/0.1.2",
        "synth/0.2",
        "synth/0.2.1",
        "synth/0.2.2",
    ]
    first = data["nodes"][1]
    assert first["parent"] == "synth/0" and first["cost"] == "0.000012"
    assert first["duration_ms"] == data["transcripts"]["synth/0.1"]["node"]["duration_ms"] > 0
