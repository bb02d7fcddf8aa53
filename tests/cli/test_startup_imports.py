"""``rlm --help`` and ``rlm version`` must not import the engine: the CLI package imports only typer and
its own modules at its top, the engine inside the commands that need it (issue 14: `rlm --help` took
1.5-2.4 s because every command imported the store, Temporal and litellm)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import orchestrator.cli
import sandbox

HEAVY = (
    "sqlalchemy",
    "alembic",
    "temporalio",
    "litellm",
    "docker",
    "orchestrator.store",
    "orchestrator.runs",
)
RLM = Path(sys.executable).parent / "rlm"


def _heavy_loaded_after(code: str) -> list[str]:
    """The engine modules a fresh interpreter holds after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    loaded: list[str] = json.loads(out.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_engine_module() -> None:
    assert _heavy_loaded_after("import orchestrator.cli") == []


def test_the_shared_vocabulary_loads_no_engine_module() -> None:
    """The sub-call kinds come from the sandbox package, whose Docker side loads on first use only."""
    code = "import orchestrator.vocabulary\nimport sandbox\nassert sandbox.SubcallKind.NOTE == 'note'"
    assert _heavy_loaded_after(code) == []
    assert _heavy_loaded_after("from sandbox import open_session") == ["docker"]


def test_the_engine_is_compiled_by_its_set_up() -> None:
    """ops/setup.sh compiles the editable install: with PYTHONDONTWRITEBYTECODE set, nothing else would,
    and every command would compile the CLI and the engine again at its start."""
    for module in (orchestrator.cli, sandbox):
        assert module.__file__ is not None
        compiled = Path(importlib.util.cache_from_source(module.__file__))
        assert compiled.is_file(), f"{compiled} is missing: run ops/setup.sh"


def test_help_and_version_run_without_the_engine() -> None:
    """The whole command (root callback, logging set-up, Typer's help) stays clear of the engine too."""
    code = (
        "from typer.testing import CliRunner\n"
        "from orchestrator.cli import app\n"
        "helped = CliRunner().invoke(app, ['--help'])\n"
        "versioned = CliRunner().invoke(app, ['version'])\n"
        "assert helped.exit_code == 0 and 'submit' in helped.output, helped.output\n"
        "assert versioned.exit_code == 0 and versioned.output.strip(), versioned.output"
    )
    assert _heavy_loaded_after(code) == []


def test_help_and_version_load_neither_asyncio_nor_the_logging_set_up() -> None:
    """The commands that run no engine code load none of what only engine commands need: asyncio (and
    ssl with it) and structlog (and rich's tracebacks with it) were a fifth of `rlm version`'s time."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from orchestrator.cli import app\n"
        "for args in (['--help'], ['version']):\n"
        "    done = CliRunner().invoke(app, args)\n"
        "    assert done.exit_code == 0, done.output\n"
        "loaded = sorted(m for m in ('asyncio', 'ssl', 'structlog') if m in sys.modules)\n"
        "assert loaded == [], loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_lazy_command_keeps_its_one_line_error(tmp_path: Path) -> None:
    """The store is imported inside the command, and its failure is still one ``error:`` line, exit 1."""
    env = {**os.environ, "RLM_DATA_DIR": str(tmp_path), "RLM_DATABASE_URL": "nosuchdialect://x"}
    proc = subprocess.run([str(RLM), "tenant", "show"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_run_submission_loads_no_workflow_definition() -> None:
    """``rlm run`` submits by workflow name with the input dataclasses of ``orchestrator.workflows.types``:
    the workflow classes (and their modules) load only where a worker or a test asks for them."""
    probe = (
        "import sys\n"
        "import orchestrator.runs\n"
        "definitions = ('orchestrator.workflows.node', 'orchestrator.workflows.leaf', "
        "'orchestrator.workflows.launcher')\n"
        "assert not [m for m in definitions if m in sys.modules], sorted(sys.modules)\n"
        "from orchestrator.workflows import WORKFLOWS, Leaf, RLMNode\n"
        "from orchestrator.workflows.launcher import Launcher\n"
        "assert WORKFLOWS == [RLMNode, Leaf, Launcher], WORKFLOWS\n"
        "import orchestrator.workflows as package\n"
        "assert package.WORKFLOWS is WORKFLOWS"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


def test_the_runs_package_loads_a_part_on_first_use() -> None:
    """A bad option's ``RunError`` costs neither the store nor Temporal's client, and every name the
    package exports still resolves."""
    assert _heavy_loaded_after("from orchestrator.runs import RunError") == ["orchestrator.runs"]
    probe = (
        "import orchestrator.runs as runs\n"
        "from orchestrator.runs.start import submit_run\n"
        "assert [name for name in runs.__all__ if getattr(runs, name) is None] == []\n"
        "assert runs.submit_run is submit_run"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)


def test_price_show_reads_registered_and_scripted_prices_without_litellm(tmp_path: Path) -> None:
    """Only a price found in no other source needs litellm (its price map)."""
    code = (
        "from typer.testing import CliRunner\n"
        "from orchestrator.cli import app\n"
        f"env = {{'RLM_DATA_DIR': {str(tmp_path)!r}, 'RLM_DATABASE_URL': ''}}\n"
        "args = ['price', 'set', 'acme/tuned', '--input', '1e-7', '--output', '2e-7']\n"
        "done = CliRunner().invoke(app, args, env=env)\n"
        "assert done.exit_code == 0, done.output\n"
        "shown = CliRunner().invoke(app, ['price', 'show', 'acme/tuned'], env=env)\n"
        "assert shown.exit_code == 0 and shown.output.endswith('(registered with `rlm price set`)\\n'), "
        "shown.output\n"
        "shown = CliRunner().invoke(app, ['price', 'show', 'scripted/leaf?price_in=3'], env=env)\n"
        "assert shown.exit_code == 0 and 'input 0.000003 USD/token' in shown.output, shown.output"
    )
    assert "litellm" not in _heavy_loaded_after(code)


def test_the_scripted_model_server_loads_no_engine_module() -> None:
    """``rlm model serve`` (and the benchmark's shared model server) answer without litellm."""
    assert _heavy_loaded_after("import orchestrator.llm.openai_server") == []
