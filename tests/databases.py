"""Which care records database the tests run on: SQLite files (default), or PostgreSQL when
``CARELOOM_TEST_DATABASE_URL`` names a server's database to create scratch databases from (CI sets it to
``postgresql://postgres@127.0.0.1:5432/test`` for its second pass). Every fresh database is a new PostgreSQL
database, dropped when the test session ends."""

from __future__ import annotations

import atexit
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from runtime.errors import ConfigurationError
from runtime.settings import Settings
from store.database import open_engine
from store.sql_records import SqlCareRecordStore

__all__ = ["ADMIN_URL", "BACKEND", "database_env", "drop", "fresh_location", "fresh_postgres_url", "fresh_store",
           "postgres_available", "session_env"]

ADMIN_URL = os.environ.get("CARELOOM_TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
BACKEND = "postgresql" if os.environ.get("CARELOOM_TEST_DATABASE_URL") else "sqlite"
_made: list[str] = []


@lru_cache(maxsize=1)
def postgres_available() -> bool:
    try:
        open_engine(ADMIN_URL, pool_size=1).dispose()
        return True
    except ConfigurationError:
        return False


def _admin():  # noqa: ANN202
    return open_engine(ADMIN_URL, pool_size=1).execution_options(isolation_level="AUTOCOMMIT")


def fresh_postgres_url() -> str:
    """A new, empty PostgreSQL database on the ADMIN_URL server (dropped at exit)."""
    name = f"careloom_test_{secrets.token_hex(5)}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    if not _made:
        atexit.register(_drop_all)
    _made.append(name)
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop(url: str) -> None:
    """Drop a database fresh_postgres_url made (its connections closed first)."""
    name = make_url(url).database
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    if name in _made:
        _made.remove(name)


def _drop_all() -> None:
    for name in list(_made):
        drop(make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False))


def fresh_location(tmp_path: Path, name: str = "records.db") -> str | Path:
    """A new care records database for one test, on the backend this session tests."""
    return fresh_postgres_url() if BACKEND == "postgresql" else tmp_path / name


def session_env(settings: Settings) -> dict[str, str]:
    """CARELOOM_STATE_DIR, CARELOOM_DATABASE_URL and the signing keys of ``settings``: a careloom subprocess on
    the same state, trusting (and signing with) the same decision keys."""
    keys = {"CARELOOM_SIGNING_KEYS": settings.signing_keys.get_secret_value()} if settings.signing_keys else {}
    return {"CARELOOM_STATE_DIR": str(settings.state_dir), **database_env(settings.database_location), **keys}


def database_env(location: str | Path) -> dict[str, str]:
    """The environment a careloom subprocess needs to open the same database."""
    url = location if isinstance(location, str) else f"sqlite:///{location}"
    return {"CARELOOM_DATABASE_URL": url}


@contextmanager
def fresh_store(tmp_path: Path, name: str = "records.db") -> Iterator[SqlCareRecordStore]:
    """A records store on a new database of this session's backend, closed (and dropped) afterwards."""
    location = fresh_location(tmp_path, name)
    store = SqlCareRecordStore(location)
    try:
        yield store
    finally:
        store.close()
        if isinstance(location, str):
            drop(location)
