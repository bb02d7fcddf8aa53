"""Temporal's standard client configuration is loaded once into Settings; a failed connection is one line."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from orchestrator.connection import TemporalConnectError, TemporalTarget, cluster_target, connect
from orchestrator.devstack import free_port
from orchestrator.errors import RlmError
from orchestrator.settings import SettingsError, load_settings
from tests.foundation.conftest import RLM, cli_env


def test_nothing_set_means_the_embedded_server_and_a_plain_connection() -> None:
    settings = load_settings({})
    assert settings.embedded_temporal and settings.temporal_namespace == "default"
    assert settings.temporal_access.tls_config() is False and settings.temporal_access.api_key is None
    # An empty variable means unset, as everywhere (the SDK alone would read an empty TEMPORAL_TLS as on).
    blank = load_settings({"TEMPORAL_ADDRESS": "", "TEMPORAL_TLS": "", "TEMPORAL_API_KEY": ""})
    assert blank.embedded_temporal and not blank.temporal_access.tls


def test_tls_variables_are_read_into_the_settings(tmp_path: Path) -> None:
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text(f"{name} pem")
    settings = load_settings(
        {
            "TEMPORAL_ADDRESS": "cluster.example:7233",
            "TEMPORAL_NAMESPACE": "prod",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tmp_path / "ca.pem"),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "cert.pem"),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "key.pem"),
            "TEMPORAL_TLS_SERVER_NAME": "cluster.internal",
            "TEMPORAL_GRPC_META_X_TEAM": "rlm",
        }
    )
    assert (settings.temporal_address, settings.temporal_namespace) == ("cluster.example:7233", "prod")
    tls = settings.temporal_access.tls_config()
    assert isinstance(tls, TLSConfig)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (
        b"ca pem",
        b"cert pem",
        b"key pem",
    )
    assert tls.domain == "cluster.internal"
    assert settings.temporal_access.rpc_metadata == (("x-team", "rlm"),)
    # Key material stays out of reprs (log lines, tracebacks); Settings stays hashable.
    assert "key pem" not in repr(settings) and hash(settings)


def test_an_api_key_alone_means_tls_with_the_system_roots() -> None:
    settings = load_settings({"TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233", "TEMPORAL_API_KEY": "k3y"})
    assert settings.temporal_access.tls and settings.temporal_access.api_key == "k3y"
    assert settings.temporal_access.tls_config() == TLSConfig()
    assert "k3y" not in repr(settings)
    plain = load_settings({"TEMPORAL_ADDRESS": "a:1", "TEMPORAL_API_KEY": "k3y", "TEMPORAL_TLS": "false"})
    assert plain.temporal_access.tls_config() is False


def test_a_profile_of_the_config_file_is_used_and_variables_override_it(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("ca pem")
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.default]\naddress = "localhost:7233"\n'
        f'[profile.cloud]\naddress = "acct.tmprl.cloud:7233"\nnamespace = "acct"\napi_key = "from-file"\n'
        f'[profile.cloud.tls]\nserver_ca_cert_path = "{tmp_path / "ca.pem"}"\n'
    )
    env = {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "cloud"}
    settings = load_settings(env)
    assert (settings.temporal_address, settings.temporal_namespace) == ("acct.tmprl.cloud:7233", "acct")
    assert settings.temporal_access.api_key == "from-file"
    assert settings.temporal_access.server_ca_cert == b"ca pem"
    assert settings.temporal_access.source("api_key") == "api_key of Temporal profile 'cloud'"
    assert settings.temporal_access.source("client_cert") == "TEMPORAL_TLS_CLIENT_CERT_PATH"
    overridden = load_settings({**env, "TEMPORAL_API_KEY": "from-env", "TEMPORAL_NAMESPACE": "other"})
    assert (overridden.temporal_access.api_key, overridden.temporal_namespace) == ("from-env", "other")
    assert overridden.temporal_access.source("api_key") == "TEMPORAL_API_KEY"
    assert load_settings({"TEMPORAL_CONFIG_FILE": str(config)}).temporal_address == "localhost:7233"
    with pytest.raises(
        SettingsError, match=r"profile 'nope'.*check TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE"
    ):
        load_settings({**env, "TEMPORAL_PROFILE": "nope"})


def test_the_temporal_clis_own_config_file_is_found_from_the_environment_given(tmp_path: Path) -> None:
    (tmp_path / "temporalio").mkdir()
    (tmp_path / "temporalio" / "temporal.toml").write_text('[profile.default]\naddress = "from-cli:7233"\n')
    assert load_settings({"XDG_CONFIG_HOME": str(tmp_path)}).temporal_address == "from-cli:7233"
    assert load_settings({"XDG_CONFIG_HOME": str(tmp_path / "elsewhere")}).embedded_temporal


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TEMPORAL_ADDRESS": "a:1", "TEMPORAL_TLS": "yes"}, r"TEMPORAL_TLS='yes' is not a boolean"),
        (
            {"TEMPORAL_ADDRESS": "a:1", "TEMPORAL_TLS_CLIENT_CERT_PATH": "/nonexistent/cert.pem"},
            r"TEMPORAL_TLS_CLIENT_CERT_PATH: /nonexistent/cert.pem cannot be read \(No such file",
        ),
        ({"TEMPORAL_API_KEY": "k"}, r"no address; set TEMPORAL_ADDRESS .*embedded dev server takes neither"),
        (
            {"TEMPORAL_PROFILE": "cloud"},
            r"TEMPORAL_PROFILE='cloud' is set but there is no Temporal config file",
        ),
        (
            {"TEMPORAL_CONFIG_FILE": "/nonexistent/t.toml"},
            r"TEMPORAL_CONFIG_FILE='/nonexistent/t.toml' is not a file",
        ),
    ],
)
def test_bad_temporal_settings_are_refused_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_the_embedded_target_never_carries_a_clusters_credentials(tmp_path: Path) -> None:
    settings = load_settings({"TEMPORAL_ADDRESS": "a:1", "TEMPORAL_API_KEY": "k3y"})
    assert cluster_target(settings).access.api_key == "k3y"
    assert TemporalTarget("127.0.0.1:7233", "default", None).access.tls_config() is False


async def test_a_closed_port_is_one_line_naming_address_failure_and_checks() -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(TemporalConnectError) as caught:
        await connect(cluster_target(load_settings({"TEMPORAL_ADDRESS": address})))
    message = str(caught.value)
    assert isinstance(caught.value, RlmError) and "\n" not in message
    assert f"cannot connect to Temporal at {address}" in message
    assert "nothing is listening there" in message
    assert "check TEMPORAL_ADDRESS, that the server is running (`rlm dev`" in message


@pytest.mark.parametrize("command", ["submit", "run"])
def test_rlm_against_a_closed_port_prints_one_error_line(tmp_path: Path, command: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    context = tmp_path / "ctx.txt"
    context.write_text("some text")
    args = [RLM, command, "q?", "--context", str(context), "--detach"]
    env = cli_env(tmp_path / "data", TEMPORAL_ADDRESS=address)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"cannot connect to Temporal at {address}" in errors[0] and "TEMPORAL_ADDRESS" in errors[0]
    store = tmp_path / "data" / "rlm.sqlite3"
    if store.exists():  # nothing of the run was stored before the connection failed
        with sqlite3.connect(store) as db:
            assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM blobs").fetchone() == (0,)
