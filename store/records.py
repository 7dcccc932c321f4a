"""The care records store: FHIR R4 resources as JSON, the system of record.

:class:`CareRecordStore` is the interface the tools use, with the pure helpers that read a resource (which
member it is about, its period). No I/O here, so model modules that name the store import no database:
:class:`store.sql_records.SqlCareRecordStore` keeps the resources in the care records database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal, Protocol

__all__ = ["MEMBER_PATHS", "RISK_MODEL_SYSTEM", "CareRecordStore", "PutOutcome", "member_of", "period_of"]

RISK_MODEL_SYSTEM = "urn:careloom:risk-model"
"""``RiskAssessment.method`` coding system of careloom's own learned scores (code ``<model name>/<version>``):
written by its risk activity only, never imported (store/importer.py refuses them)."""

PutOutcome = Literal["inserted", "updated", "unchanged"]

# Where each resource type names the member it is about.
MEMBER_PATHS: dict[str, tuple[str, ...]] = {
    "Coverage": ("beneficiary",),
    "Encounter": ("subject",),
    "Condition": ("subject",),
    "Consent": ("patient",),
    "CarePlan": ("subject",),
    "Goal": ("subject",),
    "Task": ("for",),
    "Communication": ("subject",),
    "CoverageEligibilityResponse": ("patient",),
    "Claim": ("patient",),
    "ClaimResponse": ("patient",),
    "DocumentReference": ("subject",),
    "ServiceRequest": ("subject",),
    "Observation": ("subject",),
    "Procedure": ("subject",),
    "QuestionnaireResponse": ("subject",),
    "DetectedIssue": ("patient",),
    "RiskAssessment": ("subject",),
}


def _reference_id(reference: Any) -> str | None:
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    for prefix in ("urn:uuid:", "Patient/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref.rsplit("/", 1)[-1]


def member_of(resource: dict[str, Any]) -> str | None:
    """The Patient id a resource is about, or None."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        return resource.get("id")
    for key in MEMBER_PATHS.get(rtype, ()):
        found = _reference_id(resource.get(key))
        if found:
            return found
    return None


def period_of(resource: dict[str, Any]) -> tuple[str | None, str | None]:
    """The indexed (start, end) dates of a resource, ISO strings as written."""
    rtype = resource.get("resourceType")
    if rtype in ("Encounter", "Coverage", "CarePlan"):
        period = resource.get("period") or {}
        return period.get("start"), period.get("end")
    if rtype == "Condition":
        return resource.get("onsetDateTime") or resource.get("recordedDate"), None
    if rtype == "Communication":
        return resource.get("sent"), None
    if rtype == "Task":
        return resource.get("authoredOn"), None
    if rtype == "RiskAssessment":  # an instant: its start and end, so scores are found by when they were made
        return resource.get("occurrenceDateTime"), resource.get("occurrenceDateTime")
    return None, None


class CareRecordStore(Protocol):
    """What the tools and the importer need from a records backend."""

    def get(self, resource_type: str, resource_id: str) -> dict[str, Any] | None: ...

    def find_for_member(
        self,
        resource_type: str,
        member_id: str,
        *,
        start_before: str | None = None,
        start_after: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def put_many(self, resources: Iterable[dict[str, Any]]) -> list[PutOutcome]: ...

    def create_once(
        self, resources: list[dict[str, Any]], idempotency_key: str
    ) -> tuple[list[dict[str, Any]], bool]: ...

    def create_once_guarded(
        self, resources: list[dict[str, Any]], idempotency_key: str, *, lock: str,
        guard: Callable[[Callable[[str, str], list[dict[str, Any]]]], None] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]: ...

    def by_idempotency_key(self, idempotency_key: str) -> dict[str, Any] | None: ...

    def discard_created(self, idempotency_key: str) -> int: ...
