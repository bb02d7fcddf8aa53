"""A secured cluster: the dev server behind a TLS terminator (haproxy) that requires a client certificate
(mTLS) on one port and an API key on another, configured with Temporal's standard variables and profiles.

stunnel cannot stand in front: it negotiates no ALPN, and the SDK's gRPC client refuses a TLS connection
that did not negotiate "h2". The API-key port speaks HTTP/2 itself and answers gRPC "unauthenticated"
unless the request carries ``authorization: Bearer <key>``, as Temporal Cloud does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.worker import Worker

from orchestrator.connection import TemporalConnectError, TemporalTarget, cluster_target, connect
from orchestrator.devstack import DevServer, free_port, temporal_binary
from orchestrator.settings import load_settings
from tests.foundation.conftest import RLM, cli_env
from tests.orchestrator.harness import word_context

API_KEY = "rlm-test-key"


@workflow.defn(sandboxed=False)
class Echo:
    @workflow.run
    async def run(self, text: str) -> str:
        return text


def _openssl(args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args.split()], cwd=cwd, check=True, capture_output=True)


def _ca(d: Path, name: str) -> None:
    _openssl(
        f"req -x509 -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.pem -days 2 -subj /CN={name}", d
    )


def _cert(d: Path, name: str, ca: str, san: str, usage: str) -> None:
    _openssl(f"req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj /CN={name}", d)
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
    _openssl(
        f"x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial -out {name}.pem -days 2 "
        f"-extfile {name}.ext",
        d,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA with a server and a client certificate, and a second CA with a client of its own."""
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "otherca")
    _cert(d, "server", "ca", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    _cert(d, "client", "ca", "DNS:client", "clientAuth")
    _cert(d, "rogue", "otherca", "DNS:rogue", "clientAuth")
    (d / "server-bundle.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    return d


@dataclass(frozen=True)
class Front:
    mtls: str
    api_key: str


@pytest.fixture(scope="module")
def front(pki: Path, dev_server: DevServer) -> Iterator[Front]:
    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if haproxy is None:
        pytest.fail("haproxy is not installed (Debian package haproxy; ops/setup.sh installs it)")
    mtls, key_port = free_port(), free_port()
    cfg = pki / "haproxy.cfg"
    cfg.write_text(f"""
defaults
  timeout connect 5s
  timeout client 10m
  timeout server 10m
frontend mtls
  mode tcp
  bind 127.0.0.1:{mtls} ssl crt {pki}/server-bundle.pem ca-file {pki}/ca.pem verify required alpn h2
  default_backend temporal_tcp
frontend apikey
  mode http
  bind 127.0.0.1:{key_port} ssl crt {pki}/server-bundle.pem alpn h2
  http-request return status 200 hdr content-type application/grpc hdr grpc-status 16 hdr grpc-message \
"API key not accepted" unless {{ req.hdr(authorization) -m str "Bearer {API_KEY}" }}
  default_backend temporal_h2
backend temporal_tcp
  mode tcp
  server dev {dev_server.address}
backend temporal_h2
  mode http
  server dev {dev_server.address} proto h2
""")
    log = (pki / "haproxy.log").open("wb")
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, mtls, key_port)
        yield Front(f"127.0.0.1:{mtls}", f"127.0.0.1:{key_port}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _wait_listening(proc: subprocess.Popen[bytes], *ports: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, "haproxy exited during start; see its log next to haproxy.cfg"
        try:
            for port in ports:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail("haproxy did not listen within 20 s")


def _mtls_env(
    pki: Path, address: str, cert: str | None = "client", key: str | None = "client", ca: str | None = "ca"
) -> dict[str, str]:
    """The standard variables for the mTLS port; ``cert=None`` leaves the client certificate out."""
    env = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TLS_SERVER_NAME": "localhost"}
    env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] = str(pki / f"{ca}.pem")
    if cert is not None:
        env["TEMPORAL_TLS_CLIENT_CERT_PATH"] = str(pki / f"{cert}.pem")
        env["TEMPORAL_TLS_CLIENT_KEY_PATH"] = str(pki / f"{key}.key")
    return env


async def test_the_right_client_certificate_runs_a_workflow_and_serves_the_temporal_cli(
    pki: Path, front: Front
) -> None:
    env = _mtls_env(pki, front.mtls)
    client = await connect(cluster_target(load_settings(env)))
    queue, wid = f"tls-{uuid.uuid4().hex[:8]}", f"tls-echo-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[Echo]):
        assert await client.execute_workflow(Echo.run, "over mTLS", id=wid, task_queue=queue) == "over mTLS"
    # The same variables configure the `temporal` CLI.
    described = subprocess.run(
        [str(temporal_binary()), "workflow", "describe", "--workflow-id", wid, "-o", "json"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert described.returncode == 0, described.stderr
    assert "COMPLETED" in described.stdout
    # The embedded-server path (a target without the cluster's access) cannot get through the terminator.
    with pytest.raises(TemporalConnectError, match=r"\(namespace default, plain\).*check TEMPORAL_TLS$"):
        await connect(TemporalTarget(front.mtls, "default", None))


async def test_a_profile_in_the_config_file_reaches_the_cluster(
    pki: Path, front: Front, tmp_path: Path
) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        f'[profile.secure]\naddress = "{front.mtls}"\nnamespace = "default"\n'
        f'[profile.secure.tls]\nserver_name = "localhost"\nserver_ca_cert_path = "{pki / "ca.pem"}"\n'
        f'client_cert_path = "{pki / "client.pem"}"\nclient_key_path = "{pki / "client.key"}"\n'
    )
    settings = load_settings({"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "secure"})
    client = await connect(cluster_target(settings))
    assert await client.service_client.check_health()


@pytest.mark.parametrize(
    ("case", "what", "check"),
    [
        (
            {"cert": "rogue", "key": "rogue"},
            "the server refused the client certificate (missing, or not signed by a CA it trusts)",
            "TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH",
        ),
        (
            {"cert": None},
            "the server refused the client certificate (missing, or not signed by a CA it trusts)",
            "TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH",
        ),
        (
            {"key": "rogue"},
            "the client certificate and key do not belong together",
            "TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH",
        ),
        (
            {"ca": "otherca"},
            "the server's certificate is not signed by a trusted CA",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        ),
    ],
    ids=["client-cert-of-another-ca", "no-client-cert", "key-of-another-cert", "wrong-server-ca"],
)
async def test_a_wrong_certificate_key_or_ca_is_one_line_naming_the_setting(
    pki: Path, front: Front, case: dict[str, str | None], what: str, check: str
) -> None:
    settings = load_settings(_mtls_env(pki, front.mtls, **case))
    with pytest.raises(TemporalConnectError) as caught:
        await connect(cluster_target(settings))
    assert str(caught.value) == (
        f"cannot connect to Temporal at {front.mtls} (namespace default, TLS): {what}; check {check}"
    )


async def test_the_api_key_is_sent_and_a_refused_key_names_the_variable(pki: Path, front: Front) -> None:
    base = {"TEMPORAL_ADDRESS": front.api_key, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pki / "ca.pem")}
    # The terminator lets a call through only with "authorization: Bearer <key>".
    client = await connect(cluster_target(load_settings({**base, "TEMPORAL_API_KEY": API_KEY})))
    assert await client.service_client.check_health()
    for refused in ({**base, "TEMPORAL_API_KEY": "not-the-key"}, {**base, "TEMPORAL_TLS": "true"}):
        with pytest.raises(
            TemporalConnectError, match=r"the server refused the credentials; check TEMPORAL_API_KEY$"
        ):
            await connect(cluster_target(load_settings(refused)))


def test_rlm_runs_over_mtls_and_a_wrong_certificate_is_one_error_line(
    pki: Path, front: Front, tmp_path: Path
) -> None:
    context, expected = word_context(tmp_path / "words.txt", 1_000)
    queue = f"tls-cli-{uuid.uuid4().hex[:8]}"
    args = [
        RLM,
        "run",
        "How many times does the word 'ERROR' appear? Use 2 chunks.",
        "--context",
        str(context),
    ]
    args += ["--model", "scripted/mapreduce", "--sub-model", "scripted/leaf", "--deadline", "240"]
    env = cli_env(tmp_path / "data", RLM_TASK_QUEUE=queue, **_mtls_env(pki, front.mtls))
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{expected}\n"

    rogue = cli_env(tmp_path / "data", RLM_TASK_QUEUE=queue, **_mtls_env(pki, front.mtls, "rogue", "rogue"))
    refused = subprocess.run([*args, "--detach"], env=rogue, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: cannot connect to Temporal at {front.mtls} (namespace default, TLS): the server refused the "
        "client certificate (missing, or not signed by a CA it trusts); check TEMPORAL_TLS_CLIENT_CERT_PATH, "
        "TEMPORAL_TLS_CLIENT_KEY_PATH"
    ], refused.stderr
