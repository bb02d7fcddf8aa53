"""Settings are read from the environment once, by ``load_settings()``, and passed down explicitly.

Temporal's connection comes from Temporal's standard client configuration (the SDK's environment
configuration: ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS*``,
``TEMPORAL_GRPC_META_*``, and profiles of the TOML file named by ``TEMPORAL_CONFIG_FILE`` /
``TEMPORAL_PROFILE``), so one set of settings serves ``rlm``, ``rlm worker`` and the ``temporal`` CLI.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, DataSource
from temporalio.service import TLSConfig

from orchestrator.datadir import default_data_dir
from orchestrator.errors import RlmError
from orchestrator.vocabulary import LeafMode, ModelCalls


class SettingsError(RlmError):
    """An environment variable holds a value that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class TemporalAccess:
    """How to authenticate to a Temporal cluster: TLS (server CA, client certificate and key, server
    name) and an API key. Plain (the default) for the embedded dev server and unsecured clusters."""

    tls: bool = False
    # repr=False: key material must not reach a log line or a traceback.
    server_ca_cert: bytes | None = field(default=None, repr=False)
    client_cert: bytes | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    api_key: str | None = field(default=None, repr=False)
    rpc_metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # The setting that supplied each part (("client_cert", "TEMPORAL_TLS_CLIENT_CERT_PATH") or a profile's
    # TOML key), so a connection error names what to check.
    sources: tuple[tuple[str, str], ...] = ()

    def source(self, part: str) -> str:
        return dict(self.sources).get(part, _ENV_NAMES[part][0])

    def tls_config(self) -> TLSConfig | bool:
        if not self.tls:
            return False
        return TLSConfig(
            server_root_ca_cert=self.server_ca_cert,
            domain=self.server_name,
            client_cert=self.client_cert,
            client_private_key=self.client_key,
        )


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    temporal_address: str | None
    temporal_namespace: str
    task_queue: str
    model: str
    sub_model: str
    sandbox_backend: str
    prices_file: Path | None
    temporal_ui_url: str | None = None
    # How llm_query sub-calls run unless a run says otherwise: "auto" (a Leaf child workflow each, inline
    # in a wide batch), "workflow" (always a Leaf) or "inline" (a local activity of the parent; see
    # docs/orchestrator.md, "Leaf modes").
    leaf_mode: LeafMode = LeafMode.AUTO
    # How long a cell's worker may go silent before the cell runs again elsewhere: it bounds how long a
    # killed worker's cell takes to recover (docs/operations.md, "When a worker dies").
    heartbeat_timeout_s: float = 30.0
    # Calls of one model a worker has in flight at once, over all its runs (0: no limit). A provider's
    # rate limit is per minute: in-flight calls / latency is the request rate, so a fleet of W workers
    # sends at most W x this / latency requests a second to a model (docs/operations.md).
    model_concurrency: int = 64
    # Where a worker makes its model calls: "auto" (in a child process of `rlm dev` and `rlm worker`,
    # in the worker of a `rlm run` that starts its own), "process" or "worker" (docs/operations.md,
    # "The model-call process").
    model_calls: ModelCalls = ModelCalls.AUTO
    # The most documents and bytes one run's or session's context may hold (--context, rlm session add).
    context_max_documents: int = 100_000
    context_max_bytes: int = 1 << 30
    # A running node keeps its last this-many REPL snapshots (rlm prune removes the rest of ended runs).
    keep_snapshots: int = 3
    # Sandbox containers a long-lived worker keeps started, so that a node's first cell never waits for
    # one to boot (0: none; docker backend only; docs/sandbox.md, "Pool").
    sandbox_pool: int = 2
    # A node's workflow run takes sub-calls while its history stays under these, below the Temporal
    # server's limit.historyCount.error and limit.historySize.error (51,200 events and 50 MB by default):
    # set them under a server's own limits where those differ (docs/orchestrator.md, "Limits"). These
    # defaults, and heartbeat_timeout_s's, are Limits' own written again: importing the workflow types here
    # would add their import to every command that reads its settings (a test pins them equal).
    max_run_events: int = 45_000
    max_run_bytes: int = 45_000_000
    temporal_access: TemporalAccess = field(default_factory=TemporalAccess)

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = default_data_dir(env)
    database_url = env.get("RLM_DATABASE_URL") or f"sqlite:///{data_dir / 'rlm.sqlite3'}"
    backend = env.get("RLM_SANDBOX_BACKEND", "docker")
    if backend not in ("docker", "process"):
        raise SettingsError(
            f"RLM_SANDBOX_BACKEND={backend!r} is not known; use 'docker' (default) or 'process'"
        )
    prices = env.get("RLM_PRICES_FILE")
    leaf_mode = env.get("RLM_LEAF_MODE") or LeafMode.AUTO
    if leaf_mode not in tuple(LeafMode):
        raise SettingsError(
            f"RLM_LEAF_MODE={leaf_mode!r} is not known; use 'auto' (default), 'workflow' or 'inline'"
        )
    model_calls = env.get("RLM_MODEL_CALLS") or ModelCalls.AUTO
    if model_calls not in tuple(ModelCalls):
        raise SettingsError(
            f"RLM_MODEL_CALLS={model_calls!r} is not known; use 'auto' (default), 'process' or 'worker'"
        )
    heartbeat = _seconds(env, "RLM_HEARTBEAT_TIMEOUT_S", Settings.heartbeat_timeout_s, low=1.0, high=3600.0)
    model_concurrency = _count(env, "RLM_MODEL_CONCURRENCY", Settings.model_concurrency, high=100_000)
    max_documents = _count(env, "RLM_CONTEXT_MAX_DOCUMENTS", Settings.context_max_documents, high=10**8)
    max_bytes = _count(env, "RLM_CONTEXT_MAX_BYTES", Settings.context_max_bytes, high=1 << 40)
    keep_snapshots = _count(env, "RLM_KEEP_SNAPSHOTS", Settings.keep_snapshots, high=1_000)
    sandbox_pool = _count(env, "RLM_SANDBOX_POOL", Settings.sandbox_pool, high=64, zero="no pool")
    run_events = _count(env, "RLM_MAX_RUN_EVENTS", Settings.max_run_events, low=1_000, high=10**8)
    run_bytes = _count(env, "RLM_MAX_RUN_BYTES", Settings.max_run_bytes, low=1_000_000, high=1 << 40)
    profile, access = _temporal_profile(env)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        temporal_address=profile.address or None,
        temporal_namespace=profile.namespace or "default",
        task_queue=env.get("RLM_TASK_QUEUE", "durable-rlm"),
        model=env.get("RLM_MODEL") or "scripted/search",
        # An empty variable means "not set", as a compose file or scheduler often passes it.
        sub_model=env.get("RLM_SUB_MODEL") or env.get("RLM_MODEL") or "scripted/search",
        sandbox_backend=backend,
        prices_file=Path(prices).expanduser() if prices else None,
        temporal_ui_url=env.get("TEMPORAL_UI_URL") or None,
        leaf_mode=LeafMode(leaf_mode),
        heartbeat_timeout_s=heartbeat,
        model_concurrency=model_concurrency,
        model_calls=ModelCalls(model_calls),
        context_max_documents=max_documents,
        context_max_bytes=max_bytes,
        keep_snapshots=keep_snapshots,
        sandbox_pool=sandbox_pool,
        max_run_events=run_events,
        max_run_bytes=run_bytes,
        temporal_access=access,
    )


def _count(
    env: Mapping[str, str], name: str, default: int, *, high: int, low: int = 0, zero: str = "no limit"
) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not low <= value <= high:
        least = f"0 ({zero})" if low == 0 else f"{low}"
        raise SettingsError(f"{name}={raw!r} must be a whole number from {least} to {high}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses nan and inf
        raise SettingsError(f"{name}={raw!r} must be a number of seconds from {low:g} to {high:g}")
    return value


# Each part of the TLS/API-key configuration: its environment variables and its key in a TOML profile.
_ENV_NAMES: Mapping[str, tuple[str, ...]] = {
    "tls": ("TEMPORAL_TLS",),
    "api_key": ("TEMPORAL_API_KEY",),
    "server_ca_cert": ("TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_SERVER_CA_CERT_DATA"),
    "client_cert": ("TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_DATA"),
    "client_key": ("TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_CLIENT_KEY_DATA"),
    "server_name": ("TEMPORAL_TLS_SERVER_NAME",),
}
_TOML_KEYS: Mapping[str, str] = {
    "tls": "tls.disabled",
    "api_key": "api_key",
    "server_ca_cert": "tls.server_ca_cert_path",
    "client_cert": "tls.client_cert_path",
    "client_key": "tls.client_key_path",
    "server_name": "tls.server_name",
}


def _temporal_profile(env: Mapping[str, str]) -> tuple[ClientConfigProfile, TemporalAccess]:
    # An empty variable means "not set" here as everywhere (a compose file passes them empty); the SDK
    # would read an empty TEMPORAL_TLS as "TLS on".
    sdk_env = {k: v for k, v in env.items() if v or not k.startswith("TEMPORAL_")}
    tls_flag = sdk_env.get("TEMPORAL_TLS")
    if tls_flag is not None and tls_flag.lower() not in ("true", "false", "1", "0"):
        raise SettingsError(f"TEMPORAL_TLS={tls_flag!r} is not a boolean; use true or false")
    name = sdk_env.get("TEMPORAL_PROFILE") or "default"
    config_file = _temporal_config_file(sdk_env)
    try:
        profile = ClientConfigProfile.load(
            config_source=config_file, disable_file=config_file is None, override_env_vars=sdk_env
        )
    except RuntimeError as exc:  # the SDK's ConfigError: unreadable TOML, unknown profile
        first = str(exc).strip().splitlines()[0]
        raise SettingsError(
            f"Temporal client configuration (profile {name!r}): {first}; check TEMPORAL_CONFIG_FILE "
            "and TEMPORAL_PROFILE"
        ) from None
    tls_conf = profile.tls or ClientConfigTLS()
    in_profile = {
        "tls": tls_conf.disabled is not None,
        "api_key": profile.api_key is not None,
        "server_ca_cert": tls_conf.server_root_ca_cert is not None,
        "client_cert": tls_conf.client_cert is not None,
        "client_key": tls_conf.client_private_key is not None,
        "server_name": tls_conf.server_name is not None,
    }
    sources = tuple((part, _source(sdk_env, part, name, in_profile[part])) for part in _ENV_NAMES)
    access = _access(profile, dict(sources))
    if not profile.address and (access.tls or access.api_key):
        raise SettingsError(
            f"Temporal TLS or API key settings are given but no address; set TEMPORAL_ADDRESS (or address in "
            f"Temporal profile {name!r}) to the cluster: the embedded dev server takes neither"
        )
    return profile, replace(access, sources=sources)


def _temporal_config_file(env: Mapping[str, str]) -> Path | None:
    """``TEMPORAL_CONFIG_FILE``, else the file the ``temporal`` CLI writes (``temporal config set``) if it
    exists. Found from ``env`` (the SDK would look at the process's environment, whatever was passed)."""
    named = env.get("TEMPORAL_CONFIG_FILE")
    if named:
        if not Path(named).expanduser().is_file():
            raise SettingsError(
                f"TEMPORAL_CONFIG_FILE={named!r} is not a file; point it at a Temporal TOML file"
            )
        return Path(named).expanduser()
    home = env.get("HOME")
    base: Path | None = None
    if sys.platform == "darwin":
        base = Path(home) / "Library" / "Application Support" if home else None
    elif env.get("XDG_CONFIG_HOME"):
        base = Path(env["XDG_CONFIG_HOME"])
    elif home:
        base = Path(home) / ".config"
    path = base / "temporalio" / "temporal.toml" if base else None
    if path is not None and path.is_file():
        return path
    if env.get("TEMPORAL_PROFILE"):
        raise SettingsError(
            f"TEMPORAL_PROFILE={env['TEMPORAL_PROFILE']!r} is set but there is no Temporal config file; "
            "set TEMPORAL_CONFIG_FILE to the TOML file that defines the profile"
        )
    return None


def _source(env: Mapping[str, str], part: str, profile: str, in_profile: bool) -> str:
    """The variable that set ``part``, else the profile's key that did, else the variable to set."""
    names = _ENV_NAMES[part]
    from_env = next((n for n in names if env.get(n)), None)
    if from_env is None and in_profile:
        return f"{_TOML_KEYS[part]} of Temporal profile {profile!r}"
    return from_env or names[0]


def _access(profile: ClientConfigProfile, sources: Mapping[str, str]) -> TemporalAccess:
    """TLS as the SDK's ``to_client_connect_config`` decides it (an API key alone means TLS with the
    system's roots), with the files read here, so a missing one is named before anything starts."""
    config = profile.tls
    access = TemporalAccess(
        tls=profile.api_key is not None if config is None else not config.disabled,
        api_key=profile.api_key,
        rpc_metadata=tuple(profile.grpc_meta.items()),
    )
    if config is None or config.disabled:
        return access
    return replace(
        access,
        server_ca_cert=_pem(config.server_root_ca_cert, sources["server_ca_cert"]),
        client_cert=_pem(config.client_cert, sources["client_cert"]),
        client_key=_pem(config.client_private_key, sources["client_key"]),
        server_name=config.server_name,
    )


def _pem(source: DataSource | None, setting: str) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    if isinstance(source, str):
        return source.encode()
    try:
        return source.expanduser().read_bytes()
    except OSError as exc:
        raise SettingsError(
            f"{setting}: {source} cannot be read ({exc.strerror}); point it at the PEM file"
        ) from None
