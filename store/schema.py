"""The care records database's schema, versioned by Alembic migrations (``store/migrations``).

Every process that opens the database checks its revision first (:func:`ensure_current`). In development a
schema behind the code is upgraded on start; in production it is refused until ``careloom db upgrade`` has
run, and a schema ahead of the code (migrated by a newer careloom) is refused everywhere. A migration runs in
one transaction, DDL included, so a failed one leaves the previous revision, never a half-migrated schema;
on PostgreSQL an advisory lock lets one of several starting workers migrate while the others wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from runtime.database_url import SETTING
from runtime.errors import ConfigurationError
from store.database import Database, Rows

__all__ = ["SchemaState", "ensure_current", "head", "state", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"
logging.getLogger("alembic").setLevel(logging.WARNING)  # careloom reports the revisions itself
_MIGRATION_LOCK = 7_424_002


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The revision this code needs."""
    found = _scripts().get_current_head()
    assert found is not None
    return found


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str

    @property
    def known(self) -> bool:
        """False when a newer careloom migrated the database past what this code knows."""
        if self.current is None:
            return True
        try:
            return _scripts().get_revision(self.current) is not None
        except Exception:  # noqa: BLE001 - alembic raises its own errors for unknown revisions
            return False


def _current(rows: Rows) -> str | None:
    try:
        found = rows.one("SELECT version_num FROM alembic_version")
    except Exception:  # noqa: BLE001 - no alembic_version table: never migrated
        return None
    return found[0] if found else None


def state(db: Database) -> SchemaState:
    """Where the database's schema is and where the code needs it."""
    if db.engine is None:  # SQLite: a plain read, no engine (the file may be new: then there is no table)
        exists = db.read(lambda r: r.one("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'"))
        return SchemaState(db.read(_current) if exists else None, head())
    with db.engine.connect() as conn:
        return SchemaState(MigrationContext.configure(conn).get_current_revision(), head())


def _problem(found: SchemaState) -> str | None:
    if not found.known:
        return (f"{SETTING}: the database schema is at revision {found.current}, which this careloom does not know "
                f"(a newer careloom migrated it; this one needs {found.head}); run that newer careloom here")
    return None


def ensure_current(db: Database, *, migrate: bool) -> None:
    """Return if the schema is at this code's revision; upgrade it first when ``migrate``; else refuse."""
    found = state(db)
    if found.current == found.head:
        return
    if (problem := _problem(found)) is not None:
        raise ConfigurationError(problem)
    if not migrate:
        raise ConfigurationError(
            f"{SETTING}: the database schema is at revision {found.current or '(none: empty database)'} and this "
            f"careloom needs {found.head}; run `careloom db upgrade` first (production never migrates on start)")
    upgrade(db)


def upgrade(db: Database) -> tuple[str | None, str]:
    """Apply every pending migration in one transaction; (revision before, revision after)."""
    engine = db.schema_engine()
    try:
        with engine.begin() as conn:
            if db.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            found = SchemaState(before, head())
            if (problem := _problem(found)) is not None:
                raise ConfigurationError(problem)
            if before != found.head:
                command.upgrade(_config(conn), "head")
    finally:
        if engine is not db.engine:
            engine.dispose()
    return before, found.head
