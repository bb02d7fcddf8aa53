#!/usr/bin/env bash
# Set up everything (ops/setup.sh), then run the fast tier (tests/fast), then the whole test suite against
# the real services (Docker engine, PostgreSQL, Temporal dev server), then ruff and mypy. Non-zero if any
# of them fails.
# Extra arguments go to pytest, e.g. `ops/test.sh tests/store -x`. RLM_TEST_SLOW=1 includes slow tests.
# The integration tier runs in RLM_TEST_PROCESSES processes (default 2, one per core of the reference
# machine; each test file stays in one process); 1 runs it in this one.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
processes=${RLM_TEST_PROCESSES:-2}
case "$processes" in
  '' | *[!0-9]* | 0)
    echo "[test] RLM_TEST_PROCESSES must be a whole number of processes, 1 or more (got '$processes')" >&2
    exit 2
    ;;
esac
parallel=()
[ "$processes" -gt 1 ] && parallel=(-n "$processes" --dist loadfile)
bash ops/setup.sh || { echo "[test] set-up failed; nothing was tested" >&2; exit 1; }

export LITELLM_LOCAL_MODEL_COST_MAP=True
export RLM_TEST_DATABASE_URL=${RLM_TEST_DATABASE_URL:-"postgresql+psycopg://${RLM_PG_USER:-rlm}:${RLM_PG_PASSWORD:-rlm}@127.0.0.1:5432/rlm_test"}
# Tests get their own data directory, so a developer's runs and database are never touched.
export RLM_DATA_DIR=${RLM_TEST_DATA_DIR:-"$ROOT/.data/test"}
rm -rf "$RLM_DATA_DIR" && mkdir -p "$RLM_DATA_DIR"

marker=(-m "not slow")
[ "${RLM_TEST_SLOW:-0}" = "1" ] && marker=()

status=0
if [ "$#" -eq 0 ]; then
  # The fast tier first (tests/fast: the workflows on Temporal's time-skipping test server with stub
  # activities, seconds): a broken workflow shows before the long run against the real services.
  echo "[test] pytest: fast tier"
  .venv/bin/pytest -m fast tests/fast || status=1
  echo "[test] pytest ($processes processes)"
  # The slowest tests are listed at the end: the tier's time is watched (README), and they are where it goes.
  .venv/bin/pytest "${marker[@]}" "${parallel[@]}" --durations=15 --ignore=tests/fast || status=1
else
  echo "[test] pytest $*"
  .venv/bin/pytest "${marker[@]}" "$@" || status=1
fi
echo "[test] ruff"
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
echo "[test] mypy (strict)"
.venv/bin/mypy || status=1

[ "$status" -eq 0 ] && echo "[test] all green" || echo "[test] FAILED (see above)" >&2
exit "$status"
