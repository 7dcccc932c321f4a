"""careloom's exceptions, one root: each message names the problem and the fix.

Inside workflows a refusal travels as a non-retryable ``ApplicationError``
whose ``type`` is the refusal's ``code``; clients turn it back into
:class:`DecisionRefused`, so the CLI, the API and tests catch one type.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["CareloomError", "ConfigurationError", "DecisionRefused", "ImportFailure", "RefusalCode"]

RefusalCode = Literal["not_found", "conflict", "forbidden", "invalid"]


class CareloomError(Exception):
    """Base class for careloom's own errors."""


class ConfigurationError(CareloomError):
    """Settings or environment prevent careloom from starting."""


class ImportFailure(CareloomError):
    """A whole import could not run (missing folder, unreadable file)."""


class DecisionRefused(CareloomError, ValueError):
    """A decision (or a request to decide) cannot be accepted; ``code`` maps to an HTTP status.

    not_found → 404, conflict → 409, forbidden → 403, invalid → 422.
    """

    def __init__(self, code: RefusalCode | str, message: str) -> None:
        super().__init__(message)
        self.code = code
