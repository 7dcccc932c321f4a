"""What the Da Vinci PAS operations answer: the response Bundle, a pended ClaimResponse, an OperationOutcome; and
what they read: the Bundle inside a ``Parameters`` body, the keys of an ``$inquire`` Claim. Pure (no I/O).

``Claim/$submit`` and ``Claim/$inquire`` (``api/routes_fhir_pas.py``) answer a PAS response Bundle: type
collection, the ClaimResponse first, then the resources it references that the records store holds (Patient,
requesting Practitioner, insurer Organization, the Claim). A decided request answers the ClaimResponse the run
wrote, unchanged. A request still under review answers :func:`pended_claim_response`: outcome ``queued`` (R4
remittance-outcome, as PAS 2.0/2.1 bind it and as the run's own pend writes it), every line with X12 306 review
action ``A4`` (Pended), and the ``preAuthRef`` the run will issue: :func:`pre_auth_ref` of the run's determination
key ``workflow id/run id/action id``, the formula of :mod:`tools.determination`, so an approval written later
carries the same number the provider was given while it was pended. The review action is carried twice on each
line: the PAS STU2 complex ``extension-reviewAction`` (``code`` A4, ``number`` the preAuthRef) and the simple
``extension-reviewActionCode`` the run's ClaimResponses carry, so one reader reads both answers.

Every builder validates what it returns as FHIR R4 (``fhir.resources`` R4B): an invalid answer is a bug here,
never something sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from runtime.errors import PriorAuthErrorCode, PriorAuthRequestError
from store.fhir_validation import validate_resource
from tools.determination import REVIEW_ACTION_EXTENSION, REVIEW_ACTION_SYSTEM
from tools.determination import pre_auth_ref
from tools.writes import resource_id

__all__ = [
    "FHIR_JSON",
    "ISSUE_TYPE",
    "REFUSAL_SYSTEM",
    "REVIEW_ACTION_COMPLEX_EXTENSION",
    "InquiryKeys",
    "determination_key",
    "inquiry_keys",
    "operation_bundle",
    "operation_outcome",
    "pended_claim_response",
    "refusal_outcome_resource",
    "response_bundle",
]

FHIR_JSON = "application/fhir+json"
REVIEW_ACTION_COMPLEX_EXTENSION = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewAction"
REFUSAL_SYSTEM = "urn:careloom:prior-auth-refusal"
"""The system of the careloom refusal code an OperationOutcome issue carries in ``details``."""

_ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"

ISSUE_TYPE: dict[str, str] = {
    "not_a_bundle": "structure",
    "not_prior_auth": "not-supported",
    "invalid_resource": "invalid",
    "unknown_member": "not-found",
    "unknown_coverage": "not-found",
    "unknown_service_code": "code-invalid",
    "missing_notes": "required",
    "unknown_claim": "not-found",
    "conflict": "conflict",
    "too_many_items": "too-costly",
    "too_many_notes": "too-costly",
    "note_too_large": "too-long",
}
"""FHIR issue type (http://hl7.org/fhir/issue-type) of each intake refusal code."""


def determination_key(workflow_id: str, run_id: str, action_id: str) -> str:
    """The idempotency key the run writes its determination under (``workflows.agent_run`` ``idempotency_key``)."""
    return f"{workflow_id}/{run_id}/{action_id}"


def operation_bundle(body: Any) -> Any:  # noqa: ANN401 - any JSON; the callers name what is wrong with it
    """The resource a FHIR operation was given: a ``Parameters`` body's ``resource`` parameter, else the body.

    Raises ``PriorAuthRequestError("not_a_bundle")`` for a ``Parameters`` without exactly one ``resource``
    parameter carrying a resource.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        return body
    given = [p for p in body.get("parameter") or [] if isinstance(p, dict) and p.get("name") == "resource"]
    if len(given) != 1 or not isinstance(given[0].get("resource"), dict):
        raise PriorAuthRequestError(
            "not_a_bundle", f"the Parameters body has {len(given)} 'resource' parameter(s) with a resource: send"
                            " exactly one parameter named 'resource' holding the PAS Bundle, or the Bundle itself")
    return given[0]["resource"]


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], "text": display or code}


def _pended_adjudication(reference: str) -> list[dict[str, Any]]:
    action = _concept(REVIEW_ACTION_SYSTEM, "A4", "Pended")
    return [{
        "extension": [
            {"url": REVIEW_ACTION_COMPLEX_EXTENSION,
             "extension": [{"url": "number", "valueString": reference},
                           {"url": "code", "valueCodeableConcept": action}]},
            {"url": REVIEW_ACTION_EXTENSION, "valueCodeableConcept": action},
        ],
        "category": _concept(_ADJUDICATION_SYSTEM, "submitted"),
    }]


def pended_claim_response(claim: dict[str, Any], coverage: dict[str, Any], *, member_id: str, key: str,
                          received_at: datetime, decision_due: datetime | None = None) -> dict[str, Any]:
    """The ClaimResponse of a request still under review: outcome queued, every line A4, the run's preAuthRef.

    ``claim`` is the stored Claim and ``coverage`` the member's; ``key`` the run's determination key. The answer is
    the same for the same run (its id derives from ``key``; ``created`` is when the plan first received the
    request), so the same request sent twice gets the same pended ClaimResponse.
    """
    reference = pre_auth_ref(key)
    due = f" A decision is due by {decision_due.isoformat()} (CMS-0057-F)." if decision_due else ""
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": resource_id(key, "pended-claimresponse"),
        **({"identifier": claim["identifier"]} if claim.get("identifier") else {}),
        "status": "active",
        "type": claim["type"],
        "use": "preauthorization",
        "patient": {"reference": f"Patient/{member_id}"},
        "created": received_at.isoformat(),
        "insurer": coverage["payor"][0],
        "requestor": claim["provider"],
        "request": {"reference": f"Claim/{claim['id']}"},
        "outcome": "queued",
        "disposition": "Pended: the request is under review; nothing is decided yet.",
        "preAuthRef": reference,
        "item": [{"itemSequence": item["sequence"], "adjudication": _pended_adjudication(reference)}
                 for item in sorted(claim["item"], key=lambda i: i["sequence"])],
        "processNote": [{"number": 1, "type": "display", "text": (
            f"Pended for review under {reference}.{due} Ask with Claim/$inquire; the answer is the issued"
            " ClaimResponse once decided.")}],
    }
    return validate_resource(response)


def response_bundle(claim_response: dict[str, Any], related: list[dict[str, Any]], *, base_url: str,
                    timestamp: datetime, identifier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The PAS response Bundle: type collection, ``claim_response`` first, then ``related`` (each once).

    ``base_url`` is the FHIR base the fullUrls are built on (``…/fhir``); ``identifier`` echoes the request
    Bundle's (PAS: the submitter's transaction identifier).
    """
    base = base_url.rstrip("/")
    seen: set[str] = set()
    entries: list[dict[str, Any]] = []
    for resource in (claim_response, *related):
        key = f"{resource['resourceType']}/{resource['id']}"
        if key in seen:
            continue
        seen.add(key)
        entries.append({"fullUrl": f"{base}/{key}", "resource": resource})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        **({"identifier": identifier} if isinstance(identifier, dict) and identifier else {}),
        "type": "collection",
        "timestamp": timestamp.isoformat(),
        "entry": entries,
    }
    return validate_resource(bundle)


def operation_outcome(issue_type: str, diagnostics: str, *, refusal: str | None = None,
                      severity: str = "error") -> dict[str, Any]:
    """An OperationOutcome of one issue: its FHIR issue type, the message naming problem and fix, and (for an
    intake refusal) careloom's refusal code in ``details``."""
    issue: dict[str, Any] = {"severity": severity, "code": issue_type, "diagnostics": diagnostics}
    if refusal:
        issue["details"] = {"coding": [{"system": REFUSAL_SYSTEM, "code": refusal}], "text": refusal}
    return validate_resource({"resourceType": "OperationOutcome", "issue": [issue]})


def refusal_outcome_resource(err: PriorAuthRequestError) -> dict[str, Any]:
    """The OperationOutcome of an intake refusal."""
    return operation_outcome(ISSUE_TYPE.get(err.code, "invalid"), str(err), refusal=err.code)


class InquiryKeys(BaseModel):
    """What identifies the request an ``$inquire`` asks about."""

    patient_id: str = Field(description="The member's Patient id (Claim.patient of the inquiry).")
    claim_id: str | None = Field(default=None, description="The provider's Claim id, as submitted.")
    identifiers: list[tuple[str, str]] = Field(default_factory=list,
                                               description="(system, value) of each Claim.identifier given.")


def _refuse(code: PriorAuthErrorCode, message: str) -> PriorAuthRequestError:
    return PriorAuthRequestError(code, message)


def _patient_id(reference: Any, entries: list[dict[str, Any]]) -> str:  # noqa: ANN401 - any JSON
    value = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(value, str) or not value:
        raise _refuse("invalid_resource", "the inquiry Claim has no patient reference: set Claim.patient to the"
                                          " member's Patient (Patient/<id>, or the fullUrl of the Patient entry)")
    for entry in entries:
        resource = entry.get("resource") or {}
        if entry.get("fullUrl") == value and resource.get("resourceType") == "Patient" and resource.get("id"):
            return resource["id"]
    parts = value.split("/")  # Patient/<id>, or an absolute URL ending in it
    if len(parts) < 2 or parts[-2] != "Patient" or not parts[-1]:
        raise _refuse("invalid_resource", f"Claim.patient = {value!r} is not a Patient reference: point it at the"
                                          " member's Patient (Patient/<id>)")
    return parts[-1]


def inquiry_keys(bundle: Any) -> InquiryKeys:  # noqa: ANN401 - any JSON; refused naming the problem and the fix
    """The keys of a PAS inquiry Bundle's Claim, or ``PriorAuthRequestError`` naming the problem and the fix
    (``not_a_bundle``: not a Bundle; ``not_prior_auth``: no preauthorization Claim; ``invalid_resource``)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        got = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        raise _refuse("not_a_bundle", f"expected a FHIR Bundle, got {got!r}: send the PAS inquiry Bundle (type"
                                      " collection) whose Claim carries the request's identifier and patient")
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    claims = [e["resource"] for e in entries if e["resource"].get("resourceType") == "Claim"]
    if len(claims) != 1:
        raise _refuse("not_prior_auth", f"the inquiry Bundle holds {len(claims)} Claims: send one Claim, with the"
                                        " identifier (or id) and patient of the request you submitted")
    claim = claims[0]
    if claim.get("use") != "preauthorization":
        raise _refuse("not_prior_auth", f"the inquiry Claim.use is {claim.get('use')!r}: an inquiry about a"
                                        " prior-authorization request has use 'preauthorization'")
    identifiers = [(str(i.get("system") or ""), str(i["value"])) for i in claim.get("identifier") or []
                   if isinstance(i, dict) and i.get("value")]
    claim_id = claim.get("id") if isinstance(claim.get("id"), str) and claim.get("id") else None
    if claim_id is None and not identifiers:
        raise _refuse("invalid_resource", "the inquiry Claim has neither an id nor an identifier: give the Claim"
                                          " id or the Claim.identifier of the request you submitted")
    return InquiryKeys(patient_id=_patient_id(claim.get("patient"), entries), claim_id=claim_id,
                       identifiers=identifiers)
