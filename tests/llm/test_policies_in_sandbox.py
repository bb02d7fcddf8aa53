"""Each scripted policy's code, executed for real in the sandbox (process backend), end to end."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from orchestrator.protocol.prompts import NodeLimits
from orchestrator.protocol.session_prompt import turn_paragraph
from sandbox import SandboxLimits
from tests.llm.driver import Sessions, Tree, run_node

WORDS = ["alpha", "beta", "gamma", "delta", "ERRORS", "error", "omega", "kappa"]


def haystack(chars: int, seed: int, *, needle: str | None = None, marks: int = 0) -> str:
    """Random lines of words; ``marks`` lines end in the word ERROR; the needle goes in the middle half."""
    rng = random.Random(seed)
    lines: list[str] = []
    size = 0
    while size < chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12)))
        lines.append(line)
        size += len(line) + 1
    for index in rng.sample(range(len(lines)), marks):
        lines[index] += " ERROR"
    if needle is not None:
        lines.insert(rng.randrange(len(lines) // 4, 3 * len(lines) // 4), needle)
    return "\n".join(lines)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "context.txt"
    path.write_text(text)
    return path


def test_search_finds_the_needle_in_ten_million_characters(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(10_000_000, seed=1, needle="By the way, the magic number is 4817305.")
    assert len(text) >= 10_000_000
    tree = Tree()
    outcome = run_node(
        sessions,
        tree,
        model="scripted/search",
        sub_model="scripted/leaf",
        query="What is the magic number?",
        context_path=write(tmp_path, text),
        limits=NodeLimits(),
    )
    assert outcome.answer == "4817305"
    assert (outcome.forced, outcome.iterations, tree.leaves) == (False, 1, 0)
    # The model never saw the context's text: only its length.
    assert tree.prompt_tokens < 2_000


def test_search_answers_a_session_turns_question_alone(tmp_path: Path, sessions: Sessions) -> None:
    # The paragraph names `history` and `notes` in backquotes, which the policy would take for the words
    # to search.
    query = "What is the magic number?" + turn_paragraph("notes", turn=2, notes=1)
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/search",
        sub_model="scripted/leaf",
        query=query,
        context_path=write(tmp_path, haystack(50_000, seed=4, needle="the magic number is 31337.")),
        limits=NodeLimits(),
    )
    assert outcome.answer == "31337"


def test_search_with_a_regex_from_the_query(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(50_000, seed=2, needle="ticket id: TK-88812 (closed)")
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/search",
        sub_model="scripted/leaf",
        query=r"Which ticket is mentioned? Find /ticket id: (TK-\d+)/",
        context_path=write(tmp_path, text),
        limits=NodeLimits(),
    )
    assert outcome.answer == "TK-88812"


def test_search_without_a_match_says_so_on_the_next_iteration(tmp_path: Path, sessions: Sessions) -> None:
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/search",
        sub_model="scripted/leaf",
        query="What is the secret password?",
        context_path=write(tmp_path, haystack(20_000, seed=3)),
        limits=NodeLimits(),
    )
    assert outcome.iterations == 2
    assert outcome.answer == "No match for 'secret password' in the context."
    assert "no match for" in outcome.turns[0].cells[0].stdout


def test_mapreduce_over_100_chunks_gives_the_exact_count(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(400_000, seed=4, marks=777)
    expected = len(re.findall(r"\bERROR\b", text))
    assert expected == 777
    tree = Tree()
    outcome = run_node(
        sessions,
        tree,
        model="scripted/mapreduce",
        sub_model="scripted/leaf",
        query="How many times does the word 'ERROR' appear in the context? Use 100 chunks.",
        context_path=write(tmp_path, text),
        limits=NodeLimits(),
    )
    assert outcome.answer == str(expected)
    assert tree.leaves == 100
    assert "100 chunks" in outcome.turns[0].cells[0].stdout


def test_mapreduce_chunks_parameter_and_retry_with_bigger_chunks_after_the_subcall_limit(
    tmp_path: Path, sessions: Sessions
) -> None:
    text = haystack(100_000, seed=5, marks=120)
    tree = Tree()
    outcome = run_node(
        sessions,
        tree,
        model="scripted/mapreduce?chunks=40",
        sub_model="scripted/leaf",
        query="Count the matches of /\\bERROR\\b/ please.",
        context_path=write(tmp_path, text),
        limits=NodeLimits(max_subcalls=25),
    )
    assert outcome.answer == "120"
    first, second = outcome.turns
    assert first.cells[0].error is not None and "sub-call limit reached" in first.cells[0].error
    assert "20 chunks" in second.cells[0].stdout
    assert tree.leaves == 20


def test_recurse_builds_a_depth_two_tree_with_the_exact_count(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(60_000, seed=6, marks=91)
    tree = Tree()
    outcome = run_node(
        sessions,
        tree,
        model="scripted/recurse",
        sub_model="scripted/recurse",
        query="How many times does 'ERROR' appear?",
        context_path=write(tmp_path, text),
        limits=NodeLimits(max_depth=2),
    )
    assert outcome.answer == "91"
    depths = sorted(depth for depth, _ in tree.nodes)
    assert depths == [0, 1, 1, 2, 2, 2, 2]
    child_queries = {query for depth, query in tree.nodes if depth > 0}
    assert child_queries == {
        "Count the matches of the regex /\\bERROR\\b/ in the text after this line. "
        "Reply with the number only."
    }
    assert tree.leaves == 0


def test_recurse_at_max_depth_gets_leaf_answers_through_rlm_query(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(30_000, seed=7, marks=33)
    tree = Tree()
    outcome = run_node(
        sessions,
        tree,
        model="scripted/recurse?parallel=0",
        sub_model="scripted/leaf",
        query="How many times does 'ERROR' appear?",
        context_path=write(tmp_path, text),
        limits=NodeLimits(max_depth=1),
    )
    # Root recurses into two depth-1 nodes (sub model `leaf` counts directly in code there).
    assert outcome.answer == "33"
    assert sorted(depth for depth, _ in tree.nodes) == [0, 1, 1]
    assert "rlm_query(prompt)" in outcome.turns[0].reply


def test_loop_hits_max_iterations_and_answers_in_plain_text(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(5_000, seed=8)
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/loop",
        sub_model="scripted/leaf",
        query="What is the magic number?",
        context_path=write(tmp_path, text),
        limits=NodeLimits(max_iterations=3),
    )
    assert outcome.forced and outcome.iterations == 3
    assert outcome.answer == f"I ran out of iterations. All I know: the context has {len(text)} characters."


def test_spin_is_stopped_by_the_cell_timeout_and_the_policy_gives_up(
    tmp_path: Path, sessions: Sessions
) -> None:
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/spin",
        sub_model="scripted/leaf",
        query="What is the magic number?",
        context_path=write(tmp_path, "tiny"),
        limits=NodeLimits(),
        sandbox_limits=SandboxLimits(cell_timeout_s=1.0),
    )
    first = outcome.turns[0].cells[0]
    assert first.error is not None and "timed out" in first.error
    assert outcome.answer == "My code never finished, so the cell was stopped."


def test_policies_work_on_a_directory_of_documents(tmp_path: Path, sessions: Sessions) -> None:
    docs = tmp_path / "docs"
    (docs / "b").mkdir(parents=True)
    texts = [haystack(3_000, seed=10 + i, marks=i + 1) for i in range(6)]
    for i, text in enumerate(texts[:5]):
        (docs / f"doc{i}.txt").write_text(text)
    (docs / "b" / "deep.txt").write_text(texts[5] + "\nthe access code: ZX-9\n")
    found = run_node(
        sessions,
        Tree(),
        model="scripted/search",
        sub_model="scripted/leaf",
        query="What is the access code?",
        context_path=docs,
        limits=NodeLimits(),
    )
    assert found.answer == "ZX-9"
    counted = run_node(
        sessions,
        Tree(),
        model="scripted/mapreduce?chunks=4",
        sub_model="scripted/leaf",
        query="How many times does 'ERROR' appear?",
        context_path=docs,
        limits=NodeLimits(),
    )
    assert counted.answer == str(sum(range(1, 7)))


def test_search_in_a_json_context(tmp_path: Path, sessions: Sessions) -> None:
    path = tmp_path / "context.json"
    path.write_text(json.dumps({"a": "nothing here", "b": "the launch code is 31337", "c": ["x"]}))
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/leaf",
        sub_model="scripted/leaf",
        query="What is the launch code?",
        context_path=path,
        limits=NodeLimits(),
    )
    assert outcome.answer == "31337"


def test_partial_keeps_a_provisional_answer_that_is_never_ready(tmp_path: Path, sessions: Sessions) -> None:
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/partial",
        sub_model="scripted/leaf",
        query="What is the magic number?",
        context_path=write(tmp_path, "some text"),
        limits=NodeLimits(max_iterations=2),
    )
    assert outcome.forced and outcome.iterations == 2
    first = outcome.turns[0].cells[0]
    assert first.error is None and first.stdout.strip() == "9"


def test_mapreduce_one_by_one_times_each_subcall(tmp_path: Path, sessions: Sessions) -> None:
    text = haystack(3_000, seed=3, marks=40)
    outcome = run_node(
        sessions,
        Tree(),
        model="scripted/mapreduce?chunks=4&parallel=0",
        sub_model="scripted/leaf",
        query="How many times does the word 'ERROR' appear?",
        context_path=write(tmp_path, text),
        limits=NodeLimits(),
    )
    assert outcome.answer == "40"
    assert "sub-call round trip ms: p50" in outcome.turns[0].cells[0].stdout
