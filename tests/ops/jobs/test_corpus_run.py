"""Corpora as contexts end to end: ``rlm run`` over a directory and ``rlm submit`` over a ``.jsonl`` file plus
a second ``--context``; the REPL (in the Docker sandbox) sees a list with ``context.names``, and the first
prompt the model was billed for is the one listing the documents' names (as ``rlm show`` / ``rlm export``
read it back from the store)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from orchestrator.llm.scripted_model import estimate_prompt_tokens
from orchestrator.protocol.prompts import ChatMessage
from tests.ops.jobs.cli import rlm

# The scripted `code` model runs the query as its first cell: the answer is what the REPL saw.
QUERY = (
    "import json\n"
    "FINAL(json.dumps({'list': isinstance(context, list), 'names': context.names, 'docs': list(context)}))"
)
MODEL = "scripted/code"
OPTIONS = ["--model", MODEL, "--max-iterations", "3", "--max-tokens", "512", "--deadline", "300"]


async def _check_prompt(env: dict[str, str], run_id: str, names: list[str]) -> None:
    shown, text, exported = await asyncio.gather(
        rlm(env, "show", run_id, "--json"), rlm(env, "show", run_id), rlm(env, "export", run_id)
    )
    assert shown.code == text.code == exported.code == 0, (shown.err, text.err, exported.err)
    transcript = shown.json()
    context = transcript["context"]
    assert (context["kind"], context["suffix"], context["names"]) == ("documents", ".docs", names)
    assert f"  names: {', '.join(names)}" in text.out
    first = next(json.loads(line) for line in exported.out.splitlines() if '"iteration"' in line)
    prompt = [ChatMessage(m["role"], m["content"]) for m in first["prompt"]]
    listed = ", ".join(repr(name) for name in names)
    assert f"`context` is a list of {len(names)} documents" in prompt[1].content
    assert f"`context.names` holds their names in the same order: {listed}." in prompt[1].content
    # The root made one model call: what it was billed for is exactly this prompt's size.
    assert transcript["node"]["prompt_tokens"] == estimate_prompt_tokens(MODEL, prompt)


async def test_a_directory_and_json_lines_plus_a_file_become_a_list_with_names(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    folder = tmp_path / "reports"
    (folder / "2026").mkdir(parents=True)
    (folder / "b.txt").write_text("second report")
    (folder / "a.md").write_text("# first report")
    (folder / "2026" / "c.txt").write_text("third report, nested")
    (folder / ".cache").write_text("hidden: not a document")
    records = tmp_path / "events.jsonl"
    records.write_text('{"id": 1, "level": "ERROR"}\n\n"a plain line"\n')
    notes = tmp_path / "notes.txt"
    notes.write_text("notes on the events")

    by_dir, by_lines = f"corpus-dir-{tag}", f"corpus-lines-{tag}"
    ran, submitted = await asyncio.gather(
        rlm(cli_env, "run", QUERY, "--context", str(folder), *OPTIONS, "--run-id", by_dir, "--no-worker"),
        rlm(
            cli_env,
            "submit",
            QUERY,
            "--context",
            str(records),
            "--context",
            str(notes),
            *OPTIONS,
            "--run-id",
            by_lines,
            "--json",
        ),
    )

    assert ran.code == 0, ran.err
    dir_names = ["2026/c.txt", "a.md", "b.txt"]
    assert json.loads(ran.out) == {
        "list": True,
        "names": dir_names,
        "docs": ["third report, nested", "# first report", "second report"],
    }
    assert submitted.code == 0, submitted.err
    line_names = ["events.jsonl:1", "events.jsonl:3", "notes.txt"]
    assert json.loads(submitted.json()["answer"]) == {
        "list": True,
        "names": line_names,
        "docs": [{"id": 1, "level": "ERROR"}, "a plain line", "notes on the events"],
    }
    await asyncio.gather(
        _check_prompt(cli_env, by_dir, dir_names), _check_prompt(cli_env, by_lines, line_names)
    )
