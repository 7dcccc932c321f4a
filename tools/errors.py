"""Deterministic tool failures, raised as non-retryable Temporal application errors.

The ``type`` is stable: workflows and operators match on it.
"""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

__all__ = [
    "CONTACT_BUDGET_SPENT",
    "CONTACT_NOT_ALLOWED",
    "ENCOUNTER_NOT_FOUND",
    "INVALID_RESOURCE",
    "MEMBER_NOT_FOUND",
    "NO_CONTACT_POINT",
    "NOT_AN_INPATIENT_STAY",
    "OUTSIDE_CONTACT_HOURS",
    "tool_error",
]

MEMBER_NOT_FOUND = "MemberNotFound"
ENCOUNTER_NOT_FOUND = "EncounterNotFound"
NOT_AN_INPATIENT_STAY = "NotAnInpatientStay"
INVALID_RESOURCE = "InvalidResource"
CONTACT_NOT_ALLOWED = "ContactNotAllowed"
NO_CONTACT_POINT = "NoContactPoint"
OUTSIDE_CONTACT_HOURS = "OutsideContactHours"
CONTACT_BUDGET_SPENT = "ContactBudgetSpent"


def tool_error(error_type: str, message: str) -> ApplicationError:
    """A non-retryable failure: retrying cannot change the answer."""
    return ApplicationError(message, type=error_type, non_retryable=True)
