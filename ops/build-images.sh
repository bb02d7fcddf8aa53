#!/usr/bin/env bash
# Build the images ops/compose.yaml runs, on the Docker engine the workers will use:
#   1. the worker image (ops/worker.Dockerfile; pulls python:3.11-slim-bookworm),
#   2. the sandbox image under the exact tag that worker expects (it hashes the runtime sources):
#      from sandbox/image/Dockerfile (pulls debian:bookworm-slim), or with --offline from a
#      debootstrap root filesystem (`python -m sandbox.imagebuild`; needs ops/setup.sh's venv, root
#      and a Debian mirror in apt's sources, no image registry).
# Usage: ops/build-images.sh [--offline] [WORKER_IMAGE]      (default durable-rlm-worker:latest)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
offline=0
if [ "${1:-}" = "--offline" ]; then offline=1; shift; fi
worker=${1:-${RLM_WORKER_IMAGE:-durable-rlm-worker:latest}}

echo "[images] worker image $worker"
docker build -f ops/worker.Dockerfile -t "$worker" .

sandbox=$(docker run --rm --entrypoint python "$worker" -c \
  'from sandbox.imagebuild import image_ref; print(image_ref())')
if docker image inspect "$sandbox" >/dev/null 2>&1; then
  echo "[images] sandbox image $sandbox already present"
elif [ "$offline" = 1 ]; then
  built=$("$ROOT/.venv/bin/python" -m sandbox.imagebuild)
  [ "$built" = "$sandbox" ] || { echo "[images] built $built but the worker expects $sandbox: different sources?" >&2; exit 1; }
else
  echo "[images] sandbox image $sandbox"
  docker build -f sandbox/image/Dockerfile -t "$sandbox" sandbox
fi
echo "[images] ready: $worker, $sandbox"
