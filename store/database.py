"""The care records database, SQLite (embedded default) or PostgreSQL (several worker hosts, one store).

``CARELOOM_DATABASE_URL`` names it: unset or ``sqlite:///PATH`` (one file; the sqlite3 driver, WAL mode, a
connection per thread, IMMEDIATE write transactions) or ``postgresql://user@host:5432/db`` (SQLAlchemy Core over
psycopg 3, a connection pool per process). :class:`Database` gives both one interface, transactions of ``:name``
parameter statements, so the records store, the decision ledger, the access log and the watermarks are written
once for both.

Start-up checks fail with an error naming the setting and the fix (:func:`open_database`): a URL that is not
one or has an unknown scheme, an unreachable server, refused credentials, a missing database, and a schema
older or newer than the code (:mod:`store.schema`). At run time a transaction that meets a transient error (a
serialization failure, a deadlock, a lost connection, a locked, read-only or failing SQLite file) is run again a
few times, then surfaces as :class:`StoreUnavailable`, which Temporal retries like any activity failure. The
connection that met such a fault is not trusted afterwards: SQLite keeps a connection opened while the file was
read-only read-only for good, so the thread's connection is dropped and the next attempt opens a new one, and
a store that was read-only for a while writes again once it is writable, without a restart. Driver errors never
carry SQL parameters out (they would put record content into workflow histories): :class:`StoreError` names
the error class and SQLSTATE only.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import structlog
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from runtime.database_url import SETTING, Dialect, check_url
from runtime.errors import CareloomError, ConfigurationError
from store.sqlite import SqliteDatabase, needs_new_connection

__all__ = ["Database", "DuplicateKey", "Rows", "StoreError", "StoreUnavailable",
           "open_engine"]

log = structlog.get_logger(__name__)

_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
_RETRY_PAUSES = (0.05, 0.2, 0.8)

T = TypeVar("T")


class StoreError(CareloomError):
    """A database statement failed for a reason a retry will not fix; the message carries no record content."""


class DuplicateKey(StoreError):
    """A unique constraint refused a row (an idempotency key or an id already written)."""


class StoreUnavailable(CareloomError):
    """The database did not answer after in-process retries; retryable (Temporal retries the activity)."""


def _sqlite_engine(url: str) -> Engine:
    """SQLite through SQLAlchemy, for schema migrations only (run time uses the sqlite3 driver directly)."""
    engine = create_engine(url, connect_args={"timeout": 30})
    Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN below, not the driver
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # noqa: ANN001
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # DDL inside the transaction: all of a migration or none

    return engine


def open_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``, its connection checked; ConfigurationError naming the problem and the fix."""
    try:
        scheme = check_url(url)
    except ValueError as err:
        raise ConfigurationError(str(err)) from None
    parsed = make_url(url)
    if scheme == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=pool_size, max_overflow=4,
                               pool_pre_ping=True, pool_recycle=1800, pool_timeout=30,
                               connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as err:
        engine.dispose()
        raise ConfigurationError(_connect_problem(parsed.render_as_string(hide_password=True), err)) from None
    return engine


def _connect_problem(where: str, err: OperationalError) -> str:
    detail = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
    lowered = detail.lower()
    if "password authentication failed" in lowered or "authentication failed" in lowered:
        fix = "check the user and password in the URL"
    elif "does not exist" in lowered and "database" in lowered:
        fix = "create the database (createdb) or fix its name in the URL"
    elif "does not exist" in lowered and "role" in lowered:
        fix = "create that role on the server or fix the user in the URL"
    elif "connection refused" in lowered or "could not connect" in lowered or "timeout" in lowered:
        fix = "is the server running and reachable at that host and port?"
    else:
        fix = "check the URL and the server"
    return f"{SETTING}: cannot connect to {where}: {detail}; {fix}"


class Rows:
    """One connection in one transaction, whichever backend: ``rows(sql, params)`` with ``:name`` parameters
    (the sqlite3 driver and SQLAlchemy's ``text`` both take them)."""

    def __init__(self, conn: Any) -> None:  # noqa: ANN401 - a sqlite3.Connection or a SQLAlchemy Connection
        self._conn = conn
        self._sqlalchemy = not isinstance(conn, sqlite3.Connection)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if self._sqlalchemy:
            result = self._conn.execute(text(sql), params or {})
            return [tuple(r) for r in result.all()] if result.returns_rows else []
        return self._conn.execute(sql, params or {}).fetchall()

    def one(self, sql: str, params: dict[str, Any] | None = None) -> tuple[Any, ...] | None:
        found = self.rows(sql, params)
        return found[0] if found else None


def _transient(err: BaseException) -> bool:
    if isinstance(err, DBAPIError):
        if err.connection_invalidated:
            return True
        sqlstate = getattr(err.orig, "sqlstate", None) or ""
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08") or (
            isinstance(err, OperationalError) and not sqlstate)
    if isinstance(err, sqlite3.OperationalError):
        if needs_new_connection(err):  # read-only file, I/O error, cannot open: a new connection may not meet it
            return True
        message = str(err).lower()
        return "locked" in message or "busy" in message or "database or disk is full" in message
    return False


def _described(err: BaseException) -> str:
    """The error class, SQLSTATE and the server's primary message (e.g. which constraint, or a trigger's
    "access_log is append-only"), never the statement, its parameters or the DETAIL line that quotes values."""
    orig = err.orig if isinstance(err, DBAPIError) else err
    sqlstate = getattr(orig, "sqlstate", None)
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary is None and isinstance(orig, sqlite3.Error):
        primary = str(orig)  # SQLite names the constraint or the trigger's message, never the values
    return f"{type(orig).__name__}" + (f" (SQLSTATE {sqlstate})" if sqlstate else "") + (
        f": {primary}" if primary else "")


def _unique_violation(err: BaseException) -> bool:
    orig = err.orig if isinstance(err, DBAPIError) else err
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint failed" in str(orig)


class Database:
    """The care records database: ``write``/``read`` run a function in one transaction, retrying transient
    errors. Safe to share across a worker's activity threads (SQLite: a connection per thread; PostgreSQL:
    the pool, ``pool_size`` connections plus a small overflow)."""

    def __init__(self, location: Path | str, *, pool_size: int = 5) -> None:
        self.engine: Engine | None = None
        self.sqlite: SqliteDatabase | None = None
        self.path: Path | None = None
        text_location = str(location)
        if isinstance(location, str) and "://" in text_location:
            if check_url(text_location) == "sqlite":
                text_location = make_url(text_location).database or ""
            else:
                self.engine = open_engine(text_location, pool_size=pool_size)
        if self.engine is None:
            self.sqlite = SqliteDatabase(Path(text_location))
            self.path = self.sqlite.path
        self.dialect: Dialect = "postgresql" if self.engine is not None else "sqlite"

    @property
    def url(self) -> str:
        """Where it is, without a password: for messages and logs."""
        if self.engine is not None:
            return self.engine.url.render_as_string(hide_password=True)
        return f"sqlite:///{self.path}"

    def schema_engine(self) -> Engine:
        """An engine for schema migrations: the pool's on PostgreSQL, a short-lived one on SQLite (dispose it)."""
        return self.engine if self.engine is not None else _sqlite_engine(f"sqlite:///{self.path}")

    @contextmanager
    def _transaction(self) -> Iterator[Rows]:
        if self.sqlite is not None:
            with self.sqlite.transaction() as conn:
                yield Rows(conn)
            return
        assert self.engine is not None
        with self.engine.begin() as conn:
            yield Rows(conn)

    def write(self, work: Callable[[Rows], T]) -> T:
        """``work`` in one write transaction (IMMEDIATE on SQLite): all of it or none of it."""
        return self._run(work)

    def read(self, work: Callable[[Rows], T]) -> T:
        """``work`` on one connection, without taking SQLite's write lock."""
        if self.sqlite is not None:
            sqlite = self.sqlite
            return self._run(work, lambda: _nullcontext(Rows(sqlite.connection())))
        return self._run(work)

    def _run(self, work: Callable[[Rows], T], transaction: Callable[[], Any] | None = None) -> T:
        begin = transaction or self._transaction
        for attempt in range(len(_RETRY_PAUSES) + 1):
            try:
                with begin() as rows:
                    return work(rows)
            except (sqlite3.IntegrityError, IntegrityError) as err:
                if _unique_violation(err):
                    raise DuplicateKey(f"a unique constraint refused the write: {_described(err)}") from None
                raise StoreError(f"the care records database refused the write: {_described(err)}") from None
            except (sqlite3.Error, DBAPIError) as err:
                if self.sqlite is not None and needs_new_connection(err):
                    # Before any retry or error: this thread's next statement, in this call or the next one
                    # (Temporal's retry of the activity), opens the file as it is then.
                    self.sqlite.reset()
                    log.warning("store.sqlite_connection_dropped", error=_described(err), attempt=attempt + 1)
                if not _transient(err):
                    raise StoreError(f"the care records database refused a statement: {_described(err)}") from None
                if attempt == len(_RETRY_PAUSES):
                    raise StoreUnavailable(f"the care records database did not answer ({_described(err)}), "
                                           f"{attempt + 1} tries; {self.url} must be reachable") from None
                time.sleep(_RETRY_PAUSES[attempt])
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
        if self.engine is not None:
            self.engine.dispose()


@contextmanager
def _nullcontext(value: T) -> Iterator[T]:
    yield value
