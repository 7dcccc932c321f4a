"""FHIR R4 validation: ``fhir.resources.R4B`` structure plus the required value sets; messages say R4, the version
of the input, and what is wrong in words (never a raw regular expression).

The library checks required elements, primitive formats and unknown fields but
not value-set bindings (``Task.status="bogus"`` passes), so the required
bindings careloom relies on are enforced here (see ``shared/DOMAIN.md``).
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from runtime.errors import InvalidResource

__all__ = ["InvalidResource", "REQUIRED_BINDINGS", "validate_resource"]




_TASK_STATUS = {"draft", "requested", "received", "accepted", "rejected", "ready", "cancelled",
                "in-progress", "on-hold", "failed", "completed", "entered-in-error"}
_TASK_INTENT = {"unknown", "proposal", "plan", "order", "original-order", "reflex-order",
                "filler-order", "instance-order", "option"}
_PRIORITY = {"routine", "urgent", "asap", "stat"}
_CAREPLAN_STATUS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
_CAREPLAN_INTENT = {"proposal", "plan", "order", "option"}
_ACTIVITY_STATUS = {"not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled",
                    "stopped", "unknown", "entered-in-error"}
_GOAL_STATUS = {"proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                "entered-in-error", "rejected"}
_COVERAGE_STATUS = {"active", "cancelled", "draft", "entered-in-error"}
_ELIG_PURPOSE = {"auth-requirements", "benefits", "discovery", "validation"}
_ELIG_OUTCOME = {"queued", "complete", "error", "partial"}
_CONSENT_STATUS = {"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}
_EVENT_STATUS = {"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                 "entered-in-error", "unknown"}
_FINANCIAL_STATUS = {"active", "cancelled", "draft", "entered-in-error"}
_CLAIM_USE = {"claim", "preauthorization", "predetermination"}
_REMITTANCE_OUTCOME = {"queued", "complete", "error", "partial"}
_NOTE_TYPE = {"display", "print", "printoper"}
_DOCUMENT_STATUS = {"current", "superseded", "entered-in-error"}
_COMPOSITION_STATUS = {"preliminary", "final", "amended", "entered-in-error"}
_REQUEST_STATUS = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
_REQUEST_INTENT = {"proposal", "plan", "directive", "order", "original-order", "reflex-order", "filler-order",
                   "instance-order", "option"}
_BUNDLE_TYPE = {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                "history", "searchset", "collection"}

# (resource type, dotted path) -> allowed codes. A path segment that is a list
# is checked element by element.
REQUIRED_BINDINGS: dict[tuple[str, str], set[str]] = {
    ("Task", "status"): _TASK_STATUS,
    ("Task", "intent"): _TASK_INTENT,
    ("Task", "priority"): _PRIORITY,
    ("CarePlan", "status"): _CAREPLAN_STATUS,
    ("CarePlan", "intent"): _CAREPLAN_INTENT,
    ("CarePlan", "activity.detail.status"): _ACTIVITY_STATUS,
    ("Goal", "lifecycleStatus"): _GOAL_STATUS,
    ("Coverage", "status"): _COVERAGE_STATUS,
    ("CoverageEligibilityRequest", "purpose"): _ELIG_PURPOSE,
    ("CoverageEligibilityResponse", "purpose"): _ELIG_PURPOSE,
    ("CoverageEligibilityResponse", "outcome"): _ELIG_OUTCOME,
    ("Consent", "status"): _CONSENT_STATUS,
    ("Communication", "status"): _EVENT_STATUS,
    ("Communication", "priority"): _PRIORITY,
    ("Claim", "status"): _FINANCIAL_STATUS,
    ("Claim", "use"): _CLAIM_USE,
    ("ClaimResponse", "status"): _FINANCIAL_STATUS,
    ("ClaimResponse", "use"): _CLAIM_USE,
    ("ClaimResponse", "outcome"): _REMITTANCE_OUTCOME,
    ("ClaimResponse", "processNote.type"): _NOTE_TYPE,
    ("DocumentReference", "status"): _DOCUMENT_STATUS,
    ("DocumentReference", "docStatus"): _COMPOSITION_STATUS,
    ("ServiceRequest", "status"): _REQUEST_STATUS,
    ("ServiceRequest", "intent"): _REQUEST_INTENT,
    ("ServiceRequest", "priority"): _PRIORITY,
    ("Bundle", "type"): _BUNDLE_TYPE,
}


def _values_at(obj: Any, path: list[str]) -> list[Any]:
    if not path:
        return obj if isinstance(obj, list) else [obj]
    if isinstance(obj, list):
        return [v for item in obj for v in _values_at(item, path)]
    if not isinstance(obj, dict) or path[0] not in obj:
        return []
    return _values_at(obj[path[0]], path[1:])


def _problem(error: Any, resource_type: str) -> str:  # noqa: ANN401 - a pydantic error dict
    """What is wrong, in words: the library's own messages quote regular expressions and library names."""
    kind, value = error.get("type"), error.get("input")
    if isinstance(value, str) and not value.strip() and kind in ("string_pattern_mismatch", "string_too_short",
                                                                 "value_error"):
        return ("is an empty string" if value == "" else "is only whitespace") + (
            "; FHIR allows no empty values: leave the element out or give it a value")
    if kind == "string_pattern_mismatch":
        if isinstance(value, str) and value != " ".join(value.split()):
            return "has leading, trailing or repeated whitespace, which FHIR does not allow here; trim it"
        return "does not have the form FHIR requires for this element's type"
    if kind == "extra_forbidden":
        return (f"is not an element of {resource_type} in FHIR R4 (misspelt, or from another FHIR version?); "
                "remove or rename it")
    message = str(error.get("msg", "is invalid"))
    if kind == "value_error" and "regex" in message:
        hint = " (a date is YYYY, YYYY-MM or YYYY-MM-DD)" if message.startswith("Value error, Date ") else ""
        return f"does not have the form FHIR requires for this element's type{hint}"
    return message


def validate_resource(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate one resource (as JSON-like dict); return it unchanged or raise InvalidResource."""
    if not isinstance(resource, dict):
        raise InvalidResource(f"expected a JSON object, got {type(resource).__name__}")
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidResource("missing resourceType")
    try:
        model = get_fhir_model_class(resource_type)
    except ValueError:
        raise InvalidResource(f"unknown resourceType {resource_type!r}") from None
    try:
        model.model_validate(resource)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        # The input is R4: the R4B models only check it (they accept R4 for every type careloom reads).
        raise InvalidResource(
            f"{resource_type} is not valid FHIR R4: {where}: {_problem(first, resource_type)} "
            f"({err.error_count()} error(s))"
        ) from None
    for (rtype, dotted), allowed in REQUIRED_BINDINGS.items():
        if rtype != resource_type:
            continue
        for value in _values_at(resource, dotted.split(".")):
            if value not in allowed:
                raise InvalidResource(
                    f"{resource_type}.{dotted} = {value!r} is not in its required value set "
                    f"({', '.join(sorted(allowed))})"
                )
    return resource
