"""The transcript model on its own: cutting long texts with a count, JSON that round-trips, the text
``rlm show`` prints."""

from __future__ import annotations

import json

from orchestrator.transcripts.clips import FULL, Clip, Cut
from orchestrator.transcripts.model import Transcript
from orchestrator.transcripts.render import render
from tests.transcripts.sample import LONG_STDOUT, sample


def test_long_texts_are_cut_with_a_count_and_full_keeps_them_whole() -> None:
    cut = Cut(limit=5, preview=3)
    assert cut.clip("abcdefgh") == Clip(text="abcde", chars=8)
    assert cut.clip("abcdefgh").shown() == "abcde… [3 more chars]"
    assert cut.clip("abc").shown() == "abc"
    assert cut.previewed("abcdefgh") == Clip(text="abc", chars=8)
    assert cut.maybe(None) is None
    assert FULL.clip("a" * 20_000) == Clip(text="a" * 20_000, chars=20_000)
    assert FULL.previewed("b" * 5_000) == Clip(text="b" * 5_000, chars=5_000)
    assert Cut().clip("c" * 12_345).shown().endswith("… [10,345 more chars]")


def test_json_round_trips_through_text() -> None:
    for cut in (Cut(), FULL):
        transcript = sample(cut)
        document = json.loads(json.dumps(transcript.to_json()))
        assert Transcript.from_json(document) == transcript
        assert Transcript.from_json(document).to_json() == document
    cell = sample(Cut()).to_json()["iterations"][0]["cells"][0]
    assert cell["stdout"] == {"text": LONG_STDOUT[:2_000], "chars": 5_000}
    assert cell["subcalls"][0]["cost"] == "0.00025"


def test_rendered_text_shows_each_part_in_order() -> None:
    text = render(sample(Cut()))
    order = [
        "node r1/0  (root, depth 0, run r1, tenant acme)",
        "query (47 chars):",
        "context: str, 12,000 chars (.txt)",
        "── iteration 1 · scripted/mapreduce · $0.0011 · 700 in / 300 out tokens · 12 ms",
        "cell 1.0 · ok · 340 ms · 2 sub-calls",
        "replies = llm_query_batched(prompts)",
        "stdout (5,000 chars):",
        "… [3,000 more chars]",
        "(12 chars of output were cut before the model saw them)",
        "answer (partial) (2 chars):",
        "→ r1/0.1 · llm · completed · $0.00025 · 81 ms",
        "Count ERROR in chunk 1",
        "→ r1/0.2 · llm · completed",
        "cell 1.1 · running",
        "FINAL(answer)",
        "answer: (none)",
        "totals: 1 iteration, 1 cell, 2 sub-calls",
        "still running",
    ]
    positions = [text.find(part) for part in order]
    assert all(p >= 0 for p in positions), [part for part, p in zip(order, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert LONG_STDOUT not in text and LONG_STDOUT in render(sample(FULL))
