"""What every ``careloom`` command needs: validated settings and a way to run its async work."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from cli.output import fail
from runtime.errors import CareloomError
from runtime.logging import configure_logging
from runtime.settings import Settings

__all__ = ["run", "settings"]


def settings() -> Settings:
    """Read and validate the settings once; a bad value exits with the variable named."""
    try:
        value = Settings()
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"invalid setting {where} (CARELOOM_{where.upper()}): {first['msg']}", code=2)
        raise SystemExit(2) from None  # fail() already exited; this keeps type checkers honest
    from guardrails.configured import check_deployment  # the routing and criteria files, the keys

    try:
        check_deployment(value)
    except CareloomError as err:
        fail(f"invalid setting: {err}", code=2)
        raise SystemExit(2) from None
    configure_logging(value.log_level, value.log_format)
    return value


def run(coro: object) -> object:
    """Run a command's coroutine; a CareloomError becomes a clear message and exit status 1."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except CareloomError as err:
        fail(str(err))
