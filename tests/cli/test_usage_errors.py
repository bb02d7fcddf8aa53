"""A command line Click cannot parse (an unknown option, a missing argument, a value of the wrong type) and
a value out of range end like every other bad input: one ``error:`` line on stderr that says what was
wrong and where the help is, nothing on stdout, exit code 1 (never 2, which `rlm wait` and `rlm submit`
use for "the run failed"), no traceback. ``--help`` still prints the help and exits 0."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from orchestrator.ids import RULE, TARGET_RULE
from tests.ops.jobs.cli import Done, rlm


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh data directory with its SQLite store, no Temporal, no warm CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "RLM_"))}
    env.update({"RLM_DATA_DIR": str(tmp_path / "data"), "RLM_WARM_CLI": "0"})
    return env


def _one_error_line(done: Done) -> str:
    assert done.out == "", done.out
    assert "Traceback" not in done.err, done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.err
    assert done.code == 1, (done.code, done.err)
    return lines[0]


# (arguments, the command whose help the line points at, what the line must say)
USAGE = [
    (["wait", "first-1", "--timeout", "5x"], "rlm wait", r"Invalid value for '--timeout': .*number"),
    (["wait"], "rlm wait", r"Missing argument 'run_id'"),
    (["run", "q", "--deadline", "5x"], "rlm run", r"Invalid value for '--deadline'"),
    (["report", "RUN"], "rlm report", r"Missing option '--output' / '-o'"),
    (["runs", "--jsn"], "rlm runs", r"No such option: --jsn"),
    (["runs", "extra"], "rlm runs", r"Got unexpected extra argument"),
    (["tenant", "show", "--bogus"], "rlm tenant show", r"No such option: --bogus"),
    (["bogus"], "rlm", r"No such command 'bogus'"),
    (["--bogus"], "rlm", r"No such option: --bogus"),
]


async def test_a_command_line_click_refuses_is_one_error_line_and_exit_1(env: dict[str, str]) -> None:
    done = await asyncio.gather(*(rlm(env, *args) for args, _, _ in USAGE))
    for (args, command, said), result in zip(USAGE, done, strict=True):
        line = _one_error_line(result)
        assert re.fullmatch(rf"error: {said}.*; see `{command} --help`", line), (args, line)


async def test_help_is_unchanged_and_a_bare_group_shows_its_help(env: dict[str, str]) -> None:
    helps = await asyncio.gather(
        rlm(env, "--help"), rlm(env, "wait", "--help"), rlm(env, "budget", "raise", "--help")
    )
    for done in helps:
        assert done.code == 0 and "Usage: rlm" in done.out and done.err == "", done
    bare = await rlm(env, "db")
    # Its help is what the operator needs; the exit code says the command did nothing.
    assert bare.code == 1 and "Usage: rlm db" in bare.out and "Traceback" not in bare.err, bare


async def test_values_out_of_range_are_one_error_line(env: dict[str, str]) -> None:
    huge = "99999999999999999999"
    cases = [
        (["prune", "--older-than", "99999999999d", "--dry-run"], r"--older-than 99999999999d is too long; "
         r"give at most 36500d \(100 years\)"),
        (["prune", "--older-than", "99999999999", "--dry-run"], r"--older-than 99999999999 is too long"),
        (["stuck", "--attempts", huge], rf"--attempts {huge} must be from 1 to 1000000"),
        (["stuck", "--attempts", "0"], r"--attempts 0 must be from 1 to 1000000"),
        (["stuck", "--idle", "99999999999d"], r"--idle 99999999999d is too long"),
        (["budget", "raise", "--run", "r1", "-1"], r"amount '-1' must be more than 0 USD, e.g. 5 or 0.50"),
        (["budget", "raise", "--run", "r1", "0"], r"amount '0' must be more than 0 USD"),
        (["db", "downgrade", "bogusrev"], r"Can't locate revision identified by 'bogusrev'; `rlm db current` "
         r"shows the current and newest revision .*"),
        (["db", "upgrade", "--revision", "bogusrev"], r"Can't locate revision identified by 'bogusrev'; .*"),
    ]  # fmt: skip
    done = await asyncio.gather(*(rlm(env, *args) for args, _ in cases))
    for (args, said), result in zip(cases, done, strict=True):
        line = _one_error_line(result)
        assert re.match(f"error: {said}", line), (args, line)
    # The longest duration itself is fine.
    kept = await rlm(env, "prune", "--older-than", "36500d", "--dry-run")
    assert kept.code == 0 and kept.out.startswith("would remove 0 steps"), kept


# Each command that names a run (or a run or node: TARGETS), with MALFORMED where the id goes.
RUNS = [
    ["status", "MALFORMED"],
    ["tree", "MALFORMED"],
    ["wait", "MALFORMED"],
    ["watch", "MALFORMED"],
    ["export", "MALFORMED"],
    ["report", "MALFORMED", "-o", "report.html"],
    ["budget", "raise", "--run", "MALFORMED", "1"],
    ["stuck", "--run", "MALFORMED"],
]
TARGETS = [["show", "MALFORMED"], ["pause", "MALFORMED"], ["resume", "MALFORMED"], ["abort", "MALFORMED"]]


def _with(value: str, commands: list[list[str]], said: str) -> list[tuple[list[str], str]]:
    return [([part.replace("MALFORMED", value) for part in args], said) for args in commands]


async def test_a_malformed_run_or_node_id_is_refused_as_such(env: dict[str, str]) -> None:
    """Refused while the command line is parsed, saying what an id may hold: not looked up and reported
    missing (nor, for the commands that need Temporal, first sent to look for a server)."""
    run_rule, target_rule = f"; a run id is {RULE}", f"; a target is {TARGET_RULE}"
    cases = [
        *_with("a b", RUNS + TARGETS, "run id 'a b' has ' ' at position 2" + run_rule),
        *_with('x"y', RUNS + TARGETS, """run id 'x"y' has '"' at position 2""" + run_rule),
        *_with("", RUNS + TARGETS, "run id '' is empty" + run_rule),
        *_with("RUN//x", RUNS, "run id 'RUN//x' has '/' at position 4" + run_rule),
        *_with(
            "RUN//x",
            TARGETS,
            "target 'RUN//x' is not a node id: '/x' after the '/' is no tree path" + target_rule,
        ),
        *_with(
            "RUN/1.2",
            TARGETS,
            "target 'RUN/1.2' is not a node id: '1.2' after the '/' is no tree path" + target_rule,
        ),
        *_with(
            "RUN/", TARGETS, "target 'RUN/' is not a node id: '' after the '/' is no tree path" + target_rule
        ),
    ]
    for start in range(0, len(cases), 16):  # a few at a time: each is a Python process
        batch = cases[start : start + 16]
        done = await asyncio.gather(*(rlm(env, *args) for args, _ in batch))
        for (args, said), result in zip(batch, done, strict=True):
            line = _one_error_line(result)
            pattern = rf"error: Invalid value for '[-\w]+': {re.escape(said)}; see `rlm [a-z ]+ --help`"
            assert re.fullmatch(pattern, line), (args, line)
    # A well-formed id that no run has is still looked up, and reported missing.
    unknown = await rlm(env, "status", "no-such-run")
    assert _one_error_line(unknown) == "error: run 'no-such-run' does not exist"


async def test_usd_amounts_finer_than_the_ledger_keeps_are_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The ledger keeps whole nano-USD and would round a finer amount up: refused, never rounded."""
    refused = "(the ledger would round it up, so it is refused)"
    nano = "0.000000001"
    below = f"is below {nano} USD, the smallest amount the ledger keeps {refused}; give at least {nano}"
    finer = (
        f"has more than 9 decimal places, finer than the ledger's {nano} USD {refused}; round it to 9 places"
    )
    run = ["run", "q", "--context", str(tmp_path / "nowhere.txt")]  # the amount is checked before the context
    cases = [
        ([*run, "--budget-usd", "1e-30", "--no-worker"], f"--budget-usd '1e-30' {below}"),
        ([*run, "--budget-usd", "0.1234567891"], f"--budget-usd '0.1234567891' {finer}"),
        (["budget", "raise", "--run", "r1", "1e-30"], f"amount '1e-30' {below}"),
        (["budget", "raise", "--tenant", "t1", "0.0000000015"], f"amount '0.0000000015' {finer}"),
        (["resume", "r1", "--budget-usd", "0.0000000001"], f"--budget-usd '0.0000000001' {below}"),
        (["tenant", "create", "t1", "--budget-usd", "1e-30"], f"budget '1e-30' {below}"),
        (["tenant", "set-budget", "t1", "2.0000000001"], f"budget '2.0000000001' {finer}"),
        (["session", "create", "s1", "--budget-usd", "1e-30"], f"--budget-usd '1e-30' {below}"),
        (["session", "budget", "s1", "0.5000000005"], f"USD '0.5000000005' {finer}"),
        (
            ["budget", "raise", "--run", "r1", "1e20"],
            "amount 1E+20 USD is too large (maximum 9223372036.854775807 USD)",
        ),
    ]
    done = await asyncio.gather(*(rlm(env, *args) for args, _ in cases))
    for (args, said), result in zip(cases, done, strict=True):
        assert _one_error_line(result) == f"error: {said}", args
    # One nano-USD itself, and 9 decimal places, pass the check (the store then looks for the run).
    for amount in (nano, "1.123456789", "1e-9"):
        kept = await rlm(env, "budget", "raise", "--run", "r1", amount)
        assert _one_error_line(kept) == "error: no run 'r1'; check the id with `rlm status RUN`", amount
