#!/usr/bin/env bash
# Set everything up, then run the main job.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash ops/setup.sh
export LITELLM_LOCAL_MODEL_COST_MAP=True
exec .venv/bin/python ops/demo.py
