"""One way to reach the care records database, SQLite (embedded default) or PostgreSQL, through SQLAlchemy Core.

``CARELOOM_DATABASE_URL`` names it: ``sqlite:///PATH`` or ``postgresql://user@host:5432/db`` (driven by
psycopg 3). A bad URL, an unreachable server, refused credentials or a missing database fail at start with an
error naming the setting and the fix (:func:`open_engine`). SQLite write transactions begin IMMEDIATE (one
writer at a time, no upgrade deadlocks); PostgreSQL pools connections per process (``pool_size``).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from runtime.errors import ConfigurationError

__all__ = ["SETTING", "dialect_of", "open_engine", "sqlite_url"]

SETTING = "CARELOOM_DATABASE_URL"
_SCHEMES = ("sqlite", "postgresql")


def sqlite_url(path: Path | str) -> str:
    return f"sqlite:///{Path(path)}"


def dialect_of(engine: Engine) -> str:
    return engine.dialect.name


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    Path(make_url(url).database or "").parent.mkdir(parents=True, exist_ok=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # noqa: ANN001
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN below, not the driver
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # noqa: ANN001
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for ``url``, its connection checked; ConfigurationError naming the problem and the fix."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(f"{SETTING} is not a database URL; use sqlite:///PATH or "
                                 "postgresql://USER@HOST:5432/DATABASE") from None
    scheme = parsed.get_backend_name()
    if scheme not in _SCHEMES:
        raise ConfigurationError(f"{SETTING}: unknown scheme {parsed.drivername!r}; use sqlite:///PATH or "
                                 "postgresql://USER@HOST:5432/DATABASE")
    if scheme == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_size=pool_size, max_overflow=2,
                               pool_pre_ping=True, pool_recycle=1800, connect_args={"connect_timeout": 10})
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
    elif "connection refused" in lowered or "could not connect" in lowered or "timeout" in lowered:
        fix = "is the server running and reachable at that host and port?"
    else:
        fix = "check the URL and the server"
    return f"{SETTING}: cannot connect to {where}: {detail}; {fix}"
