#!/bin/sh
# First start of the compose PostgreSQL (an empty data volume) only: the roles and databases of
# ops/compose.yaml. One instance, separate roles and databases: Temporal's schema tool and the
# store's Alembic migrations never touch each other's tables, and each can be moved to its own
# server later by changing a URL. Passwords come from the container's environment.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v temporal_pw="$TEMPORAL_DB_PASSWORD" -v rlm_pw="$RLM_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_pw';
CREATE ROLE rlm LOGIN PASSWORD :'rlm_pw';
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE DATABASE rlm OWNER rlm;
SQL
