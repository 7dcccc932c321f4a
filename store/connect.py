"""Opening the care records database: connected, its schema checked (migrated on start in development, refused
until ``careloom db upgrade`` in production), one per process and location for the settings' database."""

from __future__ import annotations

import threading
from pathlib import Path

from runtime.settings import Settings
from store.database import Database
from store.schema import ensure_current

__all__ = ["configured_database", "open_database"]

_DATABASES: dict[tuple[str, int, str], Database] = {}
_DATABASES_LOCK = threading.Lock()


def open_database(location: Path | str, *, pool_size: int = 5, migrate: bool = True) -> Database:
    """The database at ``location`` (a SQLite path or a URL) with its schema current.

    ``migrate``: apply pending migrations (development); False refuses to start until ``careloom db upgrade``
    has run (production), and a schema newer than the code is refused either way.
    """
    db = Database(location, pool_size=pool_size)
    try:
        ensure_current(db, migrate=migrate)
    except BaseException:
        db.close()
        raise
    return db


def configured_database(settings: Settings) -> Database:
    """The settings' care records database, its schema checked: migrated on start in development, refused until
    ``careloom db upgrade`` in production (ConfigurationError naming the fix). One per process and location: the
    store, the ledger, the access log and the watermarks share its pool."""
    key = (str(settings.database_location), settings.database_pool_size, settings.environment)
    with _DATABASES_LOCK:
        if key not in _DATABASES:
            _DATABASES[key] = open_database(settings.database_location, pool_size=settings.database_pool_size,
                                            migrate=settings.environment == "development")
        return _DATABASES[key]
