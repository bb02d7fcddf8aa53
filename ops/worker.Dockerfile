# The durable-rlm worker image, for machines that can pull base images (ops/compose.yaml uses it).
# Build from the repository root (ops/build-images.sh does this and builds the sandbox image too):
#   docker build -f ops/worker.Dockerfile -t durable-rlm-worker:latest .
#
# The entrypoint is `rlm`: `docker run IMAGE worker` serves TEMPORAL_ADDRESS, `IMAGE db upgrade`
# migrates the store, `IMAGE temporal setup` registers the search attributes. A worker needs the
# host's Docker socket and a host directory mounted at the same path (see ops/compose.yaml), and
# the sandbox image this source tree expects on that engine:
#   docker run --rm --entrypoint python IMAGE -c 'from sandbox.imagebuild import image_ref; print(image_ref())'
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True

WORKDIR /opt/durable-rlm
# Dependencies first, so that a source change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p orchestrator sandbox \
 && touch orchestrator/__init__.py sandbox/__init__.py \
 && pip install . \
 && pip uninstall -y durable-rlm \
 && rm -rf orchestrator sandbox build *.egg-info
# The migrations are found next to the package sources (orchestrator/store/migrate.py), so the
# project is installed in place from this directory.
COPY orchestrator/ orchestrator/
COPY sandbox/ sandbox/
COPY migrations/ migrations/
# Compiled here: with PYTHONDONTWRITEBYTECODE every process would compile the engine again at start.
RUN pip install --no-deps -e . \
 && python -m compileall -q orchestrator sandbox \
 && rlm --help >/dev/null \
 && temporal --version

# TMPDIR and RLM_DATA_DIR must exist before Python picks a temporary directory: if TMPDIR is
# missing, tempfile silently falls back to /tmp, which the host's engine cannot bind-mount.
ENTRYPOINT ["/bin/sh", "-c", "mkdir -p \"${TMPDIR:-/tmp}\" \"${RLM_DATA_DIR:-/tmp/durable-rlm}\" && exec rlm \"$@\"", "rlm"]
CMD ["worker"]
