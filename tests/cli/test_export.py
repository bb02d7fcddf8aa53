"""``rlm export RUN --format rlm-jsonl``: the root's trajectory in the reference implementation's logger
format, checked against its field list; and the bad inputs of ``rlm show`` and ``rlm export``, each one
``error:`` line with exit code 1."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.activities.cell_record import CellRecord
from orchestrator.store import get_text, list_nodes, list_steps
from tests.cli.show_app import Ran, rlm
from tests.ops.jobs.cli import rlm as rlm_process
from tests.orchestrator.harness import Harness, word_context
from tests.reference.rlm_jsonl import file_problems

QUERY = "How many times does the word 'ERROR' appear? Use 3 chunks."


async def test_export_writes_the_root_trajectory_in_the_reference_format(
    harness: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path, expected = word_context(tmp_path / "w.txt", 2_000)
    out = await harness.run(QUERY, path, model="scripted/mapreduce")
    root = f"{out.run_id}/0"
    target = tmp_path / "trajectory.jsonl"

    written = rlm(cli_env, "export", out.run_id, "--format", "rlm-jsonl", "-o", str(target))
    assert (written.code, written.out, written.err) == (0, "", "")
    text = target.read_text()
    assert file_problems(text) == []
    # Without -o: stdout (rlm-jsonl is the default); the installed command prints the lines alone too.
    assert rlm(cli_env, "export", out.run_id).out == text
    installed = await rlm_process(cli_env, "export", out.run_id)
    assert (installed.code, installed.out) == (0, text)

    metadata, *iterations = [json.loads(line) for line in text.splitlines()]
    assert metadata["root_model"] == "scripted/mapreduce" and metadata["max_depth"] == 1
    with harness.sessions() as s:
        steps = list_steps(s, root)
        replies = [get_text(s, st.output_ref or "") for st in steps if st.kind == "generate"]
        cells = [CellRecord.from_data(st.data) for st in steps if st.kind == "cell"]
        leaves = sorted(n.node_id for n in list_nodes(s, out.run_id) if n.kind == "leaf")
        prompts = [get_text(s, list_steps(s, leaf)[0].input_ref or "") for leaf in leaves]
    assert [it["response"] for it in iterations] == replies
    assert [b["code"] for it in iterations for b in it["code_blocks"]] == [c.code for c in cells]
    assert [b["result"]["stdout"] for it in iterations for b in it["code_blocks"]] == [
        c.stdout for c in cells
    ]
    calls = [c for it in iterations for b in it["code_blocks"] for c in b["result"]["rlm_calls"]]
    assert [c["prompt"] for c in calls] == prompts  # whole, in the order the cell asked
    assert all(c["root_model"] == "scripted/leaf" and c["response"].isdigit() for c in calls)
    assert sum(int(c["response"]) for c in calls) == expected
    first = iterations[0]["prompt"]
    assert [m["role"] for m in first] == ["system", "user"] and QUERY in first[1]["content"]
    assert iterations[-1]["final_answer"] == str(expected)
    assert iterations[-1]["code_blocks"][-1]["result"]["final_answer"] == str(expected)


def _one_error(ran: Ran, *needles: str) -> None:
    lines = ran.err.splitlines()
    assert ran.code == 1 and ran.out == "", ran
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.err
    assert all(n in lines[0] for n in needles), lines[0]


async def test_bad_input_is_one_error_line_and_exit_1(
    harness: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    path, _ = word_context(tmp_path / "w.txt", 300)
    out = await harness.run("Find the word 'ERROR'.", path, model="scripted/search")
    run_id = out.run_id

    _one_error(rlm(cli_env, "show", "no-such-run"), "no node or run 'no-such-run'")
    _one_error(rlm(cli_env, "show", f"{run_id}/0.99"), f"no node or run '{run_id}/0.99'")
    _one_error(rlm(cli_env, "export", "no-such-run"), "no run 'no-such-run'")
    _one_error(rlm(cli_env, "show", run_id, "--tenant", "someone-else"), "tenant 'someone-else'")
    _one_error(rlm(cli_env, "export", run_id, "--tenant", "someone-else"), "tenant 'someone-else'")
    assert rlm(cli_env, "show", run_id, "--tenant", "default").code == 0
    _one_error(rlm(cli_env, "show", run_id, "--iteration", "7"), "--iteration 7", "iterations 1 to 1")
    _one_error(rlm(cli_env, "export", run_id, "--format", "csv"), "unknown --format 'csv'", "rlm-jsonl")
    missing = tmp_path / "no" / "such" / "dir" / "t.jsonl"
    _one_error(rlm(cli_env, "export", run_id, "-o", str(missing)), f"cannot write {missing}")
    _one_error(rlm(cli_env, "export", run_id, "-o", str(tmp_path)), f"cannot write {tmp_path}")
    assert not missing.parent.exists()
