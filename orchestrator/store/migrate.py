"""Alembic, driven programmatically so that ``rlm db upgrade`` works from any working directory.

The migrations live in the top-level ``migrations/`` directory of the source tree, found relative to
this package (durable-rlm is installed from its checkout, editable).

Every command checks the schema before it touches the store. Alembic is imported only when the schema
is not at ``SCHEMA_HEAD``: importing it and reading the migration scripts costs more than a short
command's own work, and a current schema is the common case.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from orchestrator.store.engine import safe_url
from orchestrator.store.errors import DatabaseUnreachable, SchemaOutdated, SchemaTooNew, StoreError

log = structlog.get_logger(__name__)

if TYPE_CHECKING:
    from alembic.config import Config

FILE_TEMPLATE = "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s"
# The newest migration's revision: the schema this code reads and writes (a test keeps it equal to
# the migrations' head).
SCHEMA_HEAD = "0007"


def migrations_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "migrations"
    if not (path / "env.py").is_file():
        raise StoreError(
            f"the Alembic migrations were not found at {path}; install durable-rlm from its source checkout "
            "(pip install -e .)"
        )
    return path


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("file_template", FILE_TEMPLATE)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise StoreError(f"the migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise DatabaseUnreachable(safe_url(engine.url), reason) from exc


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with _connect(engine) as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return heads[0] if heads else None


# Arbitrary constant naming "durable-rlm schema migrations" for PostgreSQL's advisory lock.
_MIGRATION_LOCK = 0x524C4D5F4442


def _serialize_migrations(conn: Connection) -> None:
    # Workers starting together may all run `upgrade`: the second waits, then finds the schema current.
    # (SQLite needs nothing: every transaction already starts with BEGIN IMMEDIATE.)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})


def _at_head(engine: Engine) -> bool:
    """The schema is at ``SCHEMA_HEAD``, read without Alembic; False when unsure (no version table)."""
    with _connect(engine) as conn:
        try:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except DBAPIError:
            return False
    return versions == [SCHEMA_HEAD]


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with _connect(engine) as conn, conn.begin():
        _serialize_migrations(conn)
        command.upgrade(alembic_config(conn), revision)
    log.info("db.upgraded", url=safe_url(engine.url), revision=current_revision(engine))


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    with _connect(engine) as conn, conn.begin():
        _serialize_migrations(conn)
        command.downgrade(alembic_config(conn), revision)
    log.info("db.downgraded", url=safe_url(engine.url), revision=current_revision(engine))


def check_schema(engine: Engine) -> None:
    """Raise ``DatabaseUnreachable``, ``SchemaOutdated`` or ``SchemaTooNew`` unless the schema is current."""
    if _at_head(engine):
        return
    from alembic.script import ScriptDirectory

    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    url = safe_url(engine.url)
    if current is None:
        raise SchemaOutdated(url, None, head)
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaTooNew(url, current)
    raise SchemaOutdated(url, current, head)


def prepare_schema(engine: Engine) -> None:
    """Make the schema usable: SQLite, the zero-setup default, is migrated on first use; any other
    database must already be current, because upgrading production is an operator's decision."""
    if engine.url.get_backend_name() == "sqlite":
        if not _at_head(engine):
            upgrade(engine)
    else:
        check_schema(engine)
