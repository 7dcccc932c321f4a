"""careloom's exceptions, one root: each message names the problem and the fix.

Inside workflows a refusal travels as a non-retryable ``ApplicationError``
whose ``type`` is the refusal's ``code``; clients turn it back into
:class:`DecisionRefused`, so the CLI, the API and tests catch one type.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["CareloomError", "ConfigurationError", "CriteriaFileError", "DecisionRefused", "ImportFailure", "InvalidResource",
           "PriorAuthErrorCode", "PriorAuthRequestError", "RefusalCode", "ToolFailure"]

RefusalCode = Literal["not_found", "conflict", "forbidden", "invalid", "unavailable"]


class CareloomError(Exception):
    """Base class for careloom's own errors."""


class ConfigurationError(CareloomError):
    """Settings or environment prevent careloom from starting."""


class ImportFailure(CareloomError):
    """A whole import could not run (missing folder, unreadable file)."""


class DecisionRefused(CareloomError, ValueError):
    """A decision (or a request to decide) cannot be accepted; ``code`` maps to an HTTP status.

    not_found → 404, conflict → 409, forbidden → 403, invalid → 422, unavailable → 503 (retry).
    """

    def __init__(self, code: RefusalCode | str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidResource(CareloomError, ValueError):
    """A resource is not valid FHIR R4 or breaks a required value-set binding."""


class CriteriaFileError(CareloomError, ValueError):
    """The criteria file is missing, not JSON, or breaks the schema; the message names file, field and fix."""


PriorAuthErrorCode = Literal[
    "not_a_bundle",
    "not_prior_auth",
    "invalid_resource",
    "unknown_member",
    "unknown_coverage",
    "unknown_service_code",
    "missing_notes",
    "unknown_claim",
    "conflict",
    "too_many_items",
    "too_many_notes",
    "note_too_large",
]


class PriorAuthRequestError(CareloomError, ValueError):
    """A request careloom refuses; ``code`` is stable for callers, the message names problem and fix."""

    def __init__(self, code: PriorAuthErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: PriorAuthErrorCode = code


class ToolFailure(CareloomError):
    """A tool failed for good (non-retryable, or retries exhausted); raised in workflow code.

    ``error_type`` is the activity's ``ApplicationError`` type (e.g. ``MemberNotFound``).
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
