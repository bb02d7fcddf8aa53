"""Connecting to Temporal: the address and namespace to use, and the client commands and workers share.

``connect`` is the one place a client is made: it applies a configured cluster's TLS and API key (never
to the embedded dev server, whose target carries none), gives every client the process's one SDK
``Runtime`` (the core's logs forwarded to Python logging, so they reach stderr, not stdout), and turns a
failed connection into one line that says what failed and which setting to check.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from orchestrator.errors import RlmError
from orchestrator.logs import CORE_LOGGER
from orchestrator.settings import Settings, TemporalAccess


@dataclass(frozen=True)
class TemporalTarget:
    address: str
    namespace: str
    ui_url: str | None
    # Plain unless built by cluster_target: the embedded dev server never gets a cluster's credentials.
    access: TemporalAccess = field(default_factory=TemporalAccess)


class TemporalConnectError(RlmError):
    """No client could be made; the message names the address, what failed and the setting to check."""


def cluster_target(settings: Settings) -> TemporalTarget:
    """The configured cluster (``TEMPORAL_ADDRESS`` or a Temporal profile's address) with its TLS/API key."""
    if settings.temporal_address is None:
        raise TemporalConnectError("no Temporal cluster is configured; set TEMPORAL_ADDRESS")
    return TemporalTarget(
        settings.temporal_address,
        settings.temporal_namespace,
        settings.temporal_ui_url,
        settings.temporal_access,
    )


async def connect(target: TemporalTarget) -> Client:
    access = target.access
    try:
        return await Client.connect(
            target.address,
            namespace=target.namespace,
            api_key=access.api_key,
            tls=access.tls_config(),
            rpc_metadata=dict(access.rpc_metadata),
            runtime=temporal_runtime(),
        )
    except (RuntimeError, ValueError) as exc:
        raise TemporalConnectError(connect_failure(target, str(exc))) from exc


@functools.cache
def temporal_runtime() -> Runtime:
    """The process's one SDK runtime (each one is a thread pool), made at the first connection.

    Without it the core (Rust) prints its log lines to stdout. Here they go to the stdlib logger
    ``CORE_LOGGER``, filtered in the core at the level that logger is enabled for
    (``RLM_TEMPORAL_LOG_LEVEL``, set by ``configure_logging``)."""
    logger = logging.getLogger(CORE_LOGGER)
    level = _core_level(logger.getEffectiveLevel())
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level=level, other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logger),
            )
        )
    )


def _core_level(level: int) -> str:
    if level <= logging.DEBUG:
        return "DEBUG"
    if level <= logging.INFO:
        return "INFO"
    return "WARN" if level <= logging.WARNING else "ERROR"


# Causes in the SDK's connection errors (tonic/rustls names), what they mean, and the parts to check.
_TLS_FILES = ("client_cert", "client_key")
_REFUSED_CERT = "the server refused the client certificate (missing, or not signed by a CA it trusts)"
# The connection closed under the first call. With TLS 1.3 the server checks the client certificate after
# the client has finished its handshake, so a refusal arrives as an alert or as just this, by timing.
_DROPPED = ("transport error", "connection closed", "BrokenPipe", "ConnectionReset", "operation was canceled")
_CAUSES: tuple[tuple[tuple[str, ...], str, tuple[str, ...]], ...] = (
    (("Connection refused",), "nothing is listening there", ()),
    (("dns error",), "the host name does not resolve", ()),
    (("KeyMismatch",), "the client certificate and key do not belong together", _TLS_FILES),
    (("PrivateKeyParseError",), "the client key is not a PEM private key", ("client_key",)),
    (("NoCertificatesPresented",), "the client certificate is not a PEM certificate", ("client_cert",)),
    (
        ("CertificateRequired", "UnknownCA", "BadCertificate", "CertificateUnknown", "AccessDenied"),
        _REFUSED_CERT,
        _TLS_FILES,
    ),
    (("UnknownIssuer",), "the server's certificate is not signed by a trusted CA", ("server_ca_cert",)),
    (("NotValidForName",), "the server's certificate is not valid for the name used", ("server_name",)),
    (("InvalidContentType", "InvalidMessage"), "the server does not speak TLS there", ("tls",)),
    (("H2NotNegotiated",), "the TLS endpoint does not offer HTTP/2 (ALPN h2), which gRPC needs", ()),
    (
        ("Unauthenticated", "PermissionDenied", "401 Unauthorized", "403 Forbidden"),
        "the server refused the credentials",
        ("credentials",),
    ),
)


def connect_failure(target: TemporalTarget, error: str) -> str:
    """One line: the address, what failed, and what to check."""
    secured = target.access.tls
    cause = next((c for c in _CAUSES if any(n in error for n in c[0])), None)
    if cause is not None:
        what, parts = cause[1], cause[2]
    elif any(n in error for n in _DROPPED) and secured:
        what, parts = _REFUSED_CERT, _TLS_FILES
    elif any(n in error for n in _DROPPED):
        what, parts = "the server dropped the connection (does it require TLS?)", ("tls",)
    else:
        what, parts = _short(error), ()
    if parts == ("credentials",):
        parts = ("api_key",) if target.access.api_key or target.access.client_cert is None else _TLS_FILES
    checks = [target.access.source(part) for part in parts] or [
        "TEMPORAL_ADDRESS",
        "that the server is running (`rlm dev` starts a local one)",
    ]
    return (
        f"cannot connect to Temporal at {target.address} (namespace {target.namespace}, "
        f"{'TLS' if secured else 'plain'}): {what}; check {', '.join(checks)}"
    )


def _short(error: str) -> str:
    text = " ".join(error.split()).removeprefix("Failed client connect: ")
    return text if len(text) <= 200 else text[:199] + "…"
