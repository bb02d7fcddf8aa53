"""ops/compose.yaml and ops/worker.Dockerfile, checked without pulling any image.

Nothing here can start the production stack (no registry is reachable). What can be checked is:
the file is valid Compose (``docker-compose config``), its structure says what the runbook says
(Temporal on PostgreSQL, set-up jobs before the workers, the Docker socket and the same-path host
directory on the workers, health checks and restart policies), the environment it gives the
workers is one ``load_settings()`` accepts, and the ``rlm`` commands it runs exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.devstack import SEARCH_ATTRIBUTES
from orchestrator.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
COMPOSE = OPS / "compose.yaml"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "TEMPORAL_DB_PASSWORD": "t-secret",
    "RLM_DB_PASSWORD": "r-secret",
}
LONG_RUNNING = ("postgresql", "temporal", "temporal-ui", "worker")
ONE_SHOT = ("temporal-schema", "temporal-namespace", "temporal-setup", "store-migrate")

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


class MissingVariable(LookupError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME:?message}`` and ``$$``, recursively."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name, "")
        if current:
            return current
        if op == ":?":
            raise MissingVariable(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return _VAR.sub(one, value)


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, Any]:
    resolved = interpolate(raw, SECRETS)
    return dict(resolved["services"])


def test_docker_compose_validates_the_file() -> None:
    compose = shutil.which("docker-compose")
    assert compose, (
        "docker-compose is not installed (Debian package docker-compose; ops/setup.sh installs it)"
    )
    env = {**os.environ, **SECRETS}
    proc = subprocess.run(
        [compose, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    # Without the passwords the file refuses to resolve, naming the variable.
    bare = {k: v for k, v in os.environ.items() if k not in SECRETS}
    proc = subprocess.run(
        [compose, "-f", str(COMPOSE), "config", "-q"], env=bare, capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "POSTGRES_PASSWORD" in proc.stderr or "RLM_DB_PASSWORD" in proc.stderr


def test_passwords_are_required(raw: dict[str, Any]) -> None:
    for name in SECRETS:
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw, {k: v for k, v in SECRETS.items() if k != name})


def test_services_and_their_order(services: dict[str, Any]) -> None:
    assert set(services) == {*LONG_RUNNING, *ONE_SHOT}

    def after(service: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in services[service]["depends_on"].items()}

    assert after("temporal-schema") == {"postgresql": "service_healthy"}
    assert after("temporal") == {"temporal-schema": "service_completed_successfully"}
    assert after("temporal-ui") == {"temporal": "service_healthy"}
    assert after("temporal-namespace") == {"temporal": "service_healthy"}
    assert after("temporal-setup") == {"temporal-namespace": "service_completed_successfully"}
    assert after("store-migrate") == {"postgresql": "service_healthy"}
    assert after("worker") == {
        "temporal-setup": "service_completed_successfully",
        "store-migrate": "service_completed_successfully",
    }


def test_restart_policies_and_health_checks(services: dict[str, Any]) -> None:
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no", name
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["logging"]["options"]["max-size"], name
    for name in ("postgresql", "temporal", "worker"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 3, name


def test_temporal_persists_to_postgresql(services: dict[str, Any]) -> None:
    env = services["temporal"]["environment"]
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["POSTGRES_PWD"] == SECRETS["TEMPORAL_DB_PASSWORD"]
    assert (env["DBNAME"], env["VISIBILITY_DBNAME"]) == ("temporal", "temporal_visibility")
    schema = services["temporal-schema"]
    script = schema["command"][0]
    for db, kind in (("temporal", "temporal"), ("temporal_visibility", "visibility")):
        assert f"--db {db} setup-schema -v 0.0" in script
        assert f"--db {db} update-schema -d" in script and f"/{kind}/versioned" in script
    assert schema["environment"]["SQL_PLUGIN"] == "postgres12"
    # Every third-party image is pinned to a version, never a moving tag.
    for name in ("postgresql", "temporal-schema", "temporal-namespace", "temporal", "temporal-ui"):
        image = services[name]["image"]
        assert ":" in image and not image.endswith(":latest"), image
    # The server and the UI listen on loopback unless the operator publishes them.
    assert services["temporal"]["ports"] == ["127.0.0.1:7233:7233"]
    assert services["temporal-ui"]["ports"] == ["127.0.0.1:8080:8080"]


def test_postgres_init_creates_the_three_databases(services: dict[str, Any]) -> None:
    mounts = services["postgresql"]["volumes"]
    init = next(m for m in mounts if "docker-entrypoint-initdb.d" in m)
    source = OPS / init.split(":")[0]
    assert source.is_file() and os.access(source, os.X_OK)
    sql = source.read_text()
    for db, owner in (("temporal", "temporal"), ("temporal_visibility", "temporal"), ("rlm", "rlm")):
        assert f"CREATE DATABASE {db} OWNER {owner};" in sql


def test_dynamic_config_is_mounted_and_parses(services: dict[str, Any]) -> None:
    env = services["temporal"]["environment"]
    mount = next(m for m in services["temporal"]["volumes"] if "dynamicconfig" in m)
    source, target = mount.split(":")[:2]
    assert target == "/etc/temporal/" + env["DYNAMIC_CONFIG_FILE_PATH"]
    config = yaml.safe_load((OPS / source).read_text())
    assert config and all(isinstance(v, list) and "value" in v[0] for v in config.values())


def test_workers_have_the_docker_socket_and_same_path_host_dir(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["command"] == ["worker"]
    assert int(worker["deploy"]["replicas"]) >= 1
    mounts = dict(m.split(":")[:2] for m in worker["volumes"])
    assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
    host_dir = "/var/lib/durable-rlm"
    # Sandbox containers are started by the host engine: the paths it bind-mounts must be host paths.
    assert mounts[host_dir] == host_dir
    env = worker["environment"]
    assert env["RLM_DATA_DIR"].startswith(host_dir + "/") and env["TMPDIR"].startswith(host_dir + "/")
    custom = interpolate(load_raw_worker_volumes(), {**SECRETS, "RLM_HOST_DIR": "/srv/rlm"})
    assert "/srv/rlm:/srv/rlm" in custom


def load_raw_worker_volumes() -> list[str]:
    volumes: list[str] = yaml.safe_load(COMPOSE.read_text())["services"]["worker"]["volumes"]
    return volumes


def test_worker_environment_is_accepted_by_load_settings(services: dict[str, Any]) -> None:
    for name in ("worker", "temporal-setup", "store-migrate"):
        env = {k: str(v) for k, v in services[name]["environment"].items() if v is not None}
        settings = load_settings(env)
        assert settings.temporal_address == "temporal:7233"
        assert (
            settings.database_url
            == f"postgresql+psycopg://rlm:{SECRETS['RLM_DB_PASSWORD']}@postgresql:5432/rlm"
        )
        assert settings.sandbox_backend == "docker"
        assert str(settings.data_dir) == "/var/lib/durable-rlm/data"
        assert settings.sub_model == settings.model  # an unset RLM_SUB_MODEL falls back
    # Every durable-rlm variable the file sets is one the engine reads (a typo would be ignored). Temporal's
    # client variables are read by the SDK's environment configuration; settings.py names those it takes
    # (and datadir.py the data directory's).
    source = "".join((ROOT / "orchestrator" / name).read_text() for name in ("settings.py", "datadir.py"))
    for key in services["worker"]["environment"]:
        if key.startswith("RLM_"):
            assert f'"{key}"' in source, key
        elif key.startswith("TEMPORAL_"):
            assert re.search(rf"\b{key}\b", source), key


@pytest.mark.parametrize("service", ["temporal-setup", "store-migrate", "worker"])
def test_the_rlm_commands_it_runs_exist(services: dict[str, Any], service: str) -> None:
    command = services[service]["command"]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"rlm {' '.join(command)}: {result.output}"
    # Options the file passes must be ones the command takes.
    for option in (word for word in command if word.startswith("--")):
        assert option in result.output, option


def test_worker_image_matches_the_compose_file(raw: dict[str, Any]) -> None:
    build = raw["x-rlm-image"]["build"]
    dockerfile = (OPS / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile == OPS / "worker.Dockerfile"
    text = dockerfile.read_text()
    for source in re.findall(r"^COPY (\S+)", text, flags=re.MULTILINE):
        assert (ROOT / source).exists(), source
    assert 'exec rlm \\"$@\\"' in text and 'CMD ["worker"]' in text
    # The migrations are found next to the sources: the project must be installed in place.
    assert "pip install --no-deps -e ." in text
    ignore = (OPS / "worker.Dockerfile.dockerignore").read_text().split()
    for kept in ("!orchestrator/", "!sandbox/", "!migrations/", "!pyproject.toml"):
        assert kept in ignore


def test_search_attributes_fit_sql_visibility() -> None:
    # PostgreSQL visibility allows a fixed number of custom attributes per type.
    per_type: dict[str, int] = {}
    for kind in SEARCH_ATTRIBUTES.values():
        per_type[kind] = per_type.get(kind, 0) + 1
    limits = {"Keyword": 10, "Int": 3, "Double": 3, "Text": 3, "Bool": 3, "Datetime": 3, "KeywordList": 3}
    for kind, count in per_type.items():
        assert count <= limits[kind], (kind, count)
