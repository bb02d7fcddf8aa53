"""The report as one self-contained HTML document: the template, stylesheet and script of ``assets/``
with the run's data embedded as JSON.

The data sits in a ``<script type="application/json">`` element, which the browser never runs; the page's
script parses it and puts every text in with ``textContent``. Inside that element only ``</script``
(or ``<!--``, which changes how the HTML parser looks for the end tag) could break out, so every ``<``,
``>`` and ``&`` of the JSON is written as a ``\\u`` escape: the bytes of a node's output can then never
form a tag. The Content-Security-Policy allows exactly the page's own script and stylesheet (by hash)
and nothing from the network, so even markup that got in could neither run nor load anything.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.runs.inspect import RunSummary, TreeRow
    from orchestrator.transcripts.clips import Cut
    from orchestrator.transcripts.model import Transcript

# JSON.parse reads these escapes back to the same characters; U+2028/2029 keep the text valid as a JS
# literal too, should anyone paste it into a script.
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_UNSAFE = re.compile("[<>&\u2028\u2029]")
_SLOT = re.compile(r"\{\{(\w+)\}\}")
# A tree row's error: one line's worth; the whole error is in the node's transcript.
ROW_ERROR_CHARS = 200


def embed_json(value: Any) -> str:
    """``value`` as JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return _UNSAFE.sub(lambda m: _ESCAPES[m.group(0)], text)


@cache
def _asset(name: str) -> str:
    return resources.files("orchestrator.report").joinpath("assets", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_html(title: str, data: Mapping[str, Any]) -> str:
    """The whole page. Slots are filled in one pass, so no inserted text is ever read as a slot."""
    css, js = _asset("report.css"), _asset("report.js")
    slots = {
        "title": html.escape(title),
        "css": css,
        "js": js,
        "style_hash": _csp_hash(css),
        "script_hash": _csp_hash(js),
        "data": embed_json(data),
    }
    return _SLOT.sub(lambda m: slots[m.group(1)], _asset("report.html"))


def report_data(
    summary: RunSummary,
    tenant: str,
    rows: Sequence[TreeRow],
    transcripts: Mapping[str, Transcript],
    cut: Cut,
    now: datetime,
) -> dict[str, Any]:
    """What the page shows, as JSON: the run, the tree rows in tree order, each node's transcript."""
    nodes = []
    for row in rows:
        transcript = transcripts.get(row.node_id)
        error = row.error
        nodes.append(
            {
                "id": row.node_id,
                "parent": row.parent_id,
                "depth": row.depth,
                "kind": row.kind,
                "status": row.status,
                "iterations": row.iterations,
                "cost": format(row.cost, "f"),
                "duration_ms": None if transcript is None else transcript.node.duration_ms,
                "answer": row.answer_preview,
                "error": None if error is None else error[:ROW_ERROR_CHARS],
            }
        )
    answer = cut.maybe(summary.answer)
    run = {
        "run_id": summary.run_id,
        "tenant": tenant,
        "status": summary.status,
        "answer": None if answer is None else answer.to_json(),
        "error": summary.error,
        "cost": format(summary.cost, "f"),
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "nodes": summary.nodes,
        "wall_ms": None if summary.wall_s is None else round(summary.wall_s * 1000),
        "generated_at": now.strftime("%Y-%m-%d %H:%M UTC"),
        "cut_chars": cut.limit,
    }
    return {
        "run": run,
        "nodes": nodes,
        "transcripts": {node_id: t.to_json() for node_id, t in transcripts.items()},
    }
