"""The syntax of ``CARELOOM_DATABASE_URL``: checked when settings are read, before anything connects."""

from __future__ import annotations

from typing import Literal

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["SETTING", "Dialect", "check_url"]

SETTING = "CARELOOM_DATABASE_URL"
_SCHEMES = ("sqlite", "postgresql")
_URL_HELP = "use sqlite:///PATH or postgresql://USER@HOST:5432/DATABASE"

Dialect = Literal["sqlite", "postgresql"]


def check_url(url: str) -> Dialect:
    """The dialect of a ``CARELOOM_DATABASE_URL``; ValueError naming the problem and the fix."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"{SETTING} is not a database URL; {_URL_HELP}") from None
    scheme = parsed.get_backend_name()
    if scheme not in _SCHEMES:
        raise ValueError(f"{SETTING}: unknown scheme {parsed.drivername!r}; {_URL_HELP}")
    if scheme == "sqlite" and not parsed.database:
        raise ValueError(f"{SETTING}: sqlite:/// needs a file path (an in-memory database keeps nothing); "
                         f"{_URL_HELP}")
    return scheme  # type: ignore[return-value]
