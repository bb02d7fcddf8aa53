"""Settings come from the environment once; bad values are refused with the fix in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.cli.run_options import LEAF_MODE_HELP
from orchestrator.settings import SettingsError, load_settings
from orchestrator.vocabulary import AUTO_INLINE_FROM, LeafMode, ModelCalls


def test_defaults_are_zero_setup(tmp_path: Path) -> None:
    settings = load_settings({"RLM_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'rlm.sqlite3'}"
    assert settings.embedded_temporal
    assert settings.sandbox_backend == "docker"
    assert settings.sub_model == settings.model


def test_environment_overrides(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "XDG_DATA_HOME": str(tmp_path),
            "RLM_DATABASE_URL": "postgresql+psycopg://u:p@db:5432/rlm",
            "TEMPORAL_ADDRESS": "temporal:7233",
            "RLM_MODEL": "openai/gpt-5",
            "RLM_SUB_MODEL": "openai/gpt-5-mini",
            "RLM_PRICES_FILE": "~/prices.json",
        }
    )
    assert settings.data_dir == tmp_path / "durable-rlm"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert not settings.embedded_temporal and settings.temporal_address == "temporal:7233"
    assert (settings.model, settings.sub_model) == ("openai/gpt-5", "openai/gpt-5-mini")
    assert settings.prices_file == Path.home() / "prices.json"


def test_unknown_sandbox_backend_names_the_choices() -> None:
    with pytest.raises(SettingsError, match=r"RLM_SANDBOX_BACKEND='vm'.*'docker'.*'process'"):
        load_settings({"RLM_SANDBOX_BACKEND": "vm"})


def test_empty_variables_mean_unset() -> None:
    settings = load_settings({"RLM_MODEL": "openai/gpt-5", "RLM_SUB_MODEL": ""})
    assert settings.sub_model == "openai/gpt-5"
    assert load_settings({"RLM_MODEL": ""}).model == "scripted/search"


def test_model_calls_default_to_a_process_of_their_own_for_long_lived_workers_only() -> None:
    default = load_settings({}).model_calls
    assert default == ModelCalls.AUTO
    assert default.in_process_of_their_own(long_lived=True)
    assert not default.in_process_of_their_own(long_lived=False)
    process = load_settings({"RLM_MODEL_CALLS": "process"}).model_calls
    assert process.in_process_of_their_own(long_lived=False)
    worker = load_settings({"RLM_MODEL_CALLS": "worker"}).model_calls
    assert not worker.in_process_of_their_own(long_lived=True)
    assert load_settings({"RLM_MODEL_CALLS": ""}).model_calls == ModelCalls.AUTO
    with pytest.raises(SettingsError, match=r"RLM_MODEL_CALLS='child'.*'auto'.*'process'.*'worker'"):
        load_settings({"RLM_MODEL_CALLS": "child"})


def test_leaf_mode_defaults_to_auto_and_refuses_unknown_modes() -> None:
    assert load_settings({}).leaf_mode == LeafMode.AUTO
    assert load_settings({"RLM_LEAF_MODE": "inline"}).leaf_mode == "inline"
    with pytest.raises(SettingsError, match=r"RLM_LEAF_MODE='fast'.*'auto'.*'workflow'.*'inline'"):
        load_settings({"RLM_LEAF_MODE": "fast"})
    # The option's help names the width from which `auto` runs a call's leaves inline.
    assert f"of {AUTO_INLINE_FROM} prompts or more" in LEAF_MODE_HELP
