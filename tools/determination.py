"""``issue_determination``: the plan's answer to a prior-authorization request, as a FHIR ClaimResponse.

A pend is written together with its FHIR Task asking the requesting provider for the missing
documentation, in the same idempotent write: a pended request without its information request
would wait for documentation nobody asked for, and one write keeps the pair all-or-nothing.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from store.records import CareRecordStore, member_of
from tools.criteria import CriteriaSet, load_criteria
from tools.errors import tool_error
from tools.notice import NOTICE_OUTCOMES, build_notice, reviewers_of, reviewers_on_record
from tools.outreach import contact_lock
from tools.writes import ServiceEffect
from tools.writes import SignedApproval, WriteResult, resource_id

__all__ = ["pre_auth_ref", 
    "APPROVAL_REQUIRED",
    "CLAIM_NOT_FOUND",
    "RECONSIDERATION_REVIEWER",
    "notice_of",
    "original_reviewers",
    "DETERMINATION_MISMATCH",
    "REASON_SYSTEM",
    "REVIEW_ACTION_EXTENSION",
    "REVIEW_ACTION_SYSTEM",
    "IssueDeterminationArgs",
    "ItemDecision",
    "WriteDeterminationInput",
    "build_claim_response",
    "build_information_request",
    "service_effect",
    "write_claim_response",
]

# Stable ApplicationError types (tools/errors.py style), raised non-retryable.
CLAIM_NOT_FOUND = "ClaimNotFound"
RECONSIDERATION_REVIEWER = "ReconsiderationReviewer"
DETERMINATION_MISMATCH = "DeterminationMismatch"
APPROVAL_REQUIRED = "ApprovalRequired"

REVIEW_ACTION_SYSTEM = "https://codesystem.x12.org/005010/306"
REVIEW_ACTION_EXTENSION = "http://hl7.org/fhir/us/davinci-pas/StructureDefinition/extension-reviewActionCode"
REASON_SYSTEM = "urn:careloom:um-determination-reason"
CRITERION_SYSTEM = "urn:careloom:um-criterion"
_ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"

Outcome = Literal["approve", "deny", "partial", "pend"]
Decision = Literal["approved", "denied", "pended", "modified"]

# X12 306 (HCR01) review action codes, one per item decision.
_REVIEW_ACTION: dict[Decision, tuple[str, str]] = {
    "approved": ("A1", "Certified in total"),
    "denied": ("A3", "Not certified"),
    "pended": ("A4", "Pended"),
    "modified": ("A6", "Modified"),
}
_FHIR_OUTCOME: dict[Outcome, str] = {"approve": "complete", "deny": "complete", "partial": "partial",
                                     "pend": "queued"}
_DISPOSITION: dict[Outcome, str] = {
    "approve": "Certified in total",
    "deny": "Not certified",
    "partial": "Partially certified",
    "pend": "Pended: additional documentation requested",
}
_CODE = r"^[a-z0-9][a-z0-9.-]*$"
ADMINISTRATIVE_REASONS = frozenset({"member-not-eligible"})
"""Reasons that rest on coverage, not on clinical criteria."""


class ItemDecision(BaseModel):
    """The decision on one requested service line."""

    sequence: int = Field(ge=1, description="Claim.item.sequence of the line decided.")
    code: str = Field(min_length=1, description="The line's service code, as requested.")
    decision: Decision
    approved_quantity: int | None = Field(
        default=None, ge=1, description="Units approved; required when modified, none when denied or pended.")

    @model_validator(mode="after")
    def _quantity_fits_decision(self) -> ItemDecision:
        if self.decision == "modified" and self.approved_quantity is None:
            raise ValueError(f"item {self.sequence} is modified: give the approved_quantity")
        if self.decision in ("denied", "pended") and self.approved_quantity is not None:
            raise ValueError(f"item {self.sequence} is {self.decision}: remove approved_quantity")
        return self


class IssueDeterminationArgs(BaseModel):
    """The proposed determination, as a reviewer sees and may edit it."""

    tool: Literal["issue_determination"] = "issue_determination"
    outcome: Outcome
    items: list[ItemDecision] = Field(min_length=1)
    reason_codes: list[str] = Field(
        default_factory=list, max_length=10,
        description="Specific reasons (CMS-0057-F: every denial has one), e.g. criteria-not-met.")
    criteria_cited: list[str] = Field(default_factory=list, max_length=20, description="Criterion ids relied on.")
    explanation: str = Field(min_length=3, max_length=500)
    requested_documentation: list[str] = Field(
        default_factory=list, max_length=20, description="Criterion ids the provider must document (pend only).")

    @model_validator(mode="after")
    def _consistent(self) -> IssueDeterminationArgs:
        for field in ("reason_codes", "criteria_cited", "requested_documentation"):
            for index, code in enumerate(getattr(self, field)):
                if not re.match(_CODE, code):  # named by place, not quoted: a model's free text may identify someone
                    raise ValueError(f"{field}[{index}] is not a code: use lowercase letters, digits, '.' and '-'")
        sequences = [item.sequence for item in self.items]
        if len(set(sequences)) != len(sequences):
            raise ValueError(f"items decide a line twice ({sequences}): one decision per Claim.item")
        decisions = {item.decision for item in self.items}
        if self.outcome == "approve" and decisions != {"approved"}:
            raise ValueError("an approve must approve every item: use partial when some are denied or modified")
        if self.outcome == "deny" and decisions != {"denied"}:
            raise ValueError("a deny must deny every item: use partial when some are approved")
        if self.outcome == "pend" and decisions != {"pended"}:
            raise ValueError("a pend must pend every item")
        if self.outcome == "partial" and ("pended" in decisions or decisions == {"approved"}
                                          or not decisions & {"approved", "modified"}):
            raise ValueError("a partial approves or modifies some items and denies or modifies others, pending none")
        if self.outcome in ("deny", "partial") and not self.reason_codes:
            raise ValueError(f"a {self.outcome} needs at least one specific reason code (CMS-0057-F)")
        # A clinical denial rests on the criteria it cites; only an administrative one (no coverage) cites none.
        if (self.outcome in ("deny", "partial") and not self.criteria_cited
                and not set(self.reason_codes) <= ADMINISTRATIVE_REASONS):
            raise ValueError(f"a {self.outcome} needs at least one criterion cited")
        if self.outcome == "pend" and not self.requested_documentation:
            raise ValueError("a pend must list requested_documentation (the criterion ids to document)")
        if self.outcome != "pend" and self.requested_documentation:
            raise ValueError("only a pend requests documentation: remove requested_documentation")
        return self

    def effect(self) -> ServiceEffect:
        """What the determination does to the member's services (:func:`service_effect`)."""
        return service_effect(self)


class WriteDeterminationInput(BaseModel):
    claim_id: str
    member_id: str
    coverage_id: str
    idempotency_key: str = Field(description="workflow id + action id: a retry returns the same ClaimResponse.")
    approved_by: str | None = Field(default=None, description="Reviewer id when a human decided it.")
    approval: SignedApproval | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signed decisions that approved this exact action; the worker verifies them before it writes."))
    arguments: IssueDeterminationArgs
    decided_at: AwareDatetime
    criteria_version: str = Field(description="criteria_version_id of the medical policy applied.")
    appeal_of: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "For a reconsideration: the ClaimResponse appealed. The write checks, from the records store, that a "
        "physician who took no part in that decision approved this one."))


def service_effect(args: IssueDeterminationArgs) -> ServiceEffect:
    """What the determination does to the member's services; anything but none needs a human."""
    if args.outcome == "deny":
        return "denies"
    if args.outcome == "pend":
        return "delays"  # CA SB 1120 counts delaying care among what only a clinician may do
    if args.outcome == "partial" or any(item.decision == "modified" for item in args.items):
        return "reduces"
    return "none"


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], "text": display or code}


def pre_auth_ref(idempotency_key: str) -> str:
    return "PA-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:12].upper()


def _adjudication(item: ItemDecision, requested: int) -> list[dict[str, Any]]:
    code, display = _REVIEW_ACTION[item.decision]
    adjudication: list[dict[str, Any]] = [{
        "extension": [{"url": REVIEW_ACTION_EXTENSION,
                       "valueCodeableConcept": _concept(REVIEW_ACTION_SYSTEM, code, display)}],
        "category": _concept(_ADJUDICATION_SYSTEM, "submitted"),
        "value": requested,
    }]
    if item.decision in ("approved", "modified"):
        adjudication.append({"category": _concept("urn:careloom:adjudication", "approved-quantity"),
                             "value": item.approved_quantity or requested})
    return adjudication


def build_claim_response(data: WriteDeterminationInput, claim: dict[str, Any],
                         coverage: dict[str, Any]) -> dict[str, Any]:
    """The ClaimResponse (FHIR R4) answering ``claim`` under this determination."""
    args = data.arguments
    requested = {item["sequence"]: int((item.get("quantity") or {}).get("value", 1)) for item in claim["item"]}
    notes = []
    if args.reason_codes:
        notes.append(f"Reasons: {', '.join(args.reason_codes)}.")
    if args.criteria_cited:
        notes.append(f"Criteria cited ({data.criteria_version}): {', '.join(args.criteria_cited)}.")
    if args.requested_documentation:
        notes.append(f"Documentation requested for: {', '.join(args.requested_documentation)}.")
    notes.append(f"Reviewed by {data.approved_by}." if data.approved_by else "Met every criterion; not reviewed.")
    if data.appeal_of:
        notes.append(f"Reconsideration of {data.appeal_of}.")
    response: dict[str, Any] = {
        "resourceType": "ClaimResponse",
        "id": resource_id(data.idempotency_key, "claimresponse"),
        "status": "active",
        "type": claim["type"],
        "use": "preauthorization",
        "patient": {"reference": f"Patient/{data.member_id}"},
        "created": data.decided_at.isoformat(),
        "insurer": coverage["payor"][0],
        "requestor": claim["provider"],
        "request": {"reference": f"Claim/{data.claim_id}"},
        "outcome": _FHIR_OUTCOME[args.outcome],
        "disposition": f"{_DISPOSITION[args.outcome]}. {args.explanation}",
        "item": [{"itemSequence": item.sequence, "adjudication": _adjudication(item, requested[item.sequence])}
                 for item in sorted(args.items, key=lambda i: i.sequence)],
        "processNote": [{"number": n, "type": "display", "text": text} for n, text in enumerate(notes, start=1)],
    }
    if args.outcome in ("approve", "partial"):
        response["preAuthRef"] = pre_auth_ref(data.idempotency_key)
    if args.reason_codes:
        # Header-level: the reasons apply to the determination, whatever line they bear on.
        response["adjudication"] = [
            {"category": _concept("urn:careloom:adjudication", "determination-reason"),
             "reason": _concept(REASON_SYSTEM, code)} for code in args.reason_codes]
    return response


def build_information_request(data: WriteDeterminationInput, claim: dict[str, Any]) -> dict[str, Any]:
    """The Task asking the requesting provider for the documentation a pend is waiting for."""
    return {
        "resourceType": "Task",
        "id": resource_id(data.idempotency_key, "information-request"),
        "status": "requested",
        "intent": "order",
        "code": _concept("urn:careloom:task-kind", "request-additional-information"),
        "description": "Send documentation for the prior-authorization criteria listed in input.",
        "focus": {"reference": f"Claim/{data.claim_id}"},
        "for": {"reference": f"Patient/{data.member_id}"},
        "authoredOn": data.decided_at.isoformat(),
        "owner": claim["provider"],
        "reasonReference": {"reference": f"ClaimResponse/{resource_id(data.idempotency_key, 'claimresponse')}"},
        "input": [{"type": _concept("urn:careloom:task-input", "missing-criterion"),
                   "valueCodeableConcept": _concept(CRITERION_SYSTEM, criterion)}
                  for criterion in data.arguments.requested_documentation],
    }


def _check_against_claim(data: WriteDeterminationInput, claim: dict[str, Any]) -> None:
    # The first coding with a code, as tools.pas_request reads the requested service.
    lines = {item["sequence"]: next((c["code"] for c in item["productOrService"].get("coding") or [] if c.get("code")),
                                    None)
             for item in claim["item"]}
    decided = {item.sequence: item.code for item in data.arguments.items}
    if decided != lines:
        raise tool_error(DETERMINATION_MISMATCH,
                         f"the determination decides lines {decided} but Claim/{data.claim_id} requests {lines}:"
                         " decide every requested line once, with its code")
    # The quantities come from the stored (immutable) Claim, not the run's input: an "approved" line approves what
    # was requested, and a "modified" one approves less (a reduction, which the approval check sends to an MD).
    requested = {item["sequence"]: (item.get("quantity") or {}).get("value") for item in claim["item"]}
    for item in data.arguments.items:
        asked = requested.get(item.sequence)
        if asked is None or item.approved_quantity is None:
            continue
        if item.decision == "approved" and item.approved_quantity != asked:
            raise tool_error(DETERMINATION_MISMATCH,
                             f"line {item.sequence} is approved for {item.approved_quantity} unit(s) but Claim/"
                             f"{data.claim_id} requests {asked}: approve the requested quantity, or decide the line "
                             "as modified (a reduction an MD decides)")
        if item.decision == "modified" and item.approved_quantity >= asked:
            raise tool_error(DETERMINATION_MISMATCH,
                             f"line {item.sequence} is modified to {item.approved_quantity} unit(s), not fewer than "
                             f"the {asked} requested: a modification approves less than was asked")


def notice_of(store: CareRecordStore, claim_response: str, member_id: str) -> dict[str, Any] | None:
    """The stored member notice of a determination (deny and partial determinations have one), or None."""
    return next((n for n in store.find_for_member("Communication", member_id)
                 if {"reference": claim_response} in (n.get("about") or [])), None)


def original_reviewers(store: CareRecordStore, claim_response: str, member_id: str) -> list[str]:
    """Who decided a stored determination: the reviewer ids its notice records."""
    notice = notice_of(store, claim_response, member_id)
    return sorted(set(reviewers_on_record(notice))) if notice is not None else []


def _check_reconsideration(store: CareRecordStore, data: WriteDeterminationInput) -> None:
    """A reconsideration is approved by a physician, and by nobody who decided the determination appealed: read
    from the records store, not from the run (whoever can start a run could name anyone there)."""
    rtype, _, rid = (data.appeal_of or "").partition("/")
    appealed = store.get(rtype, rid) if rtype == "ClaimResponse" else None
    if appealed is None or (appealed.get("request") or {}).get("reference") != f"Claim/{data.claim_id}":
        raise tool_error(RECONSIDERATION_REVIEWER, f"{data.appeal_of} is not a determination of Claim/"
                                                   f"{data.claim_id}: a reconsideration names the decision appealed")
    earlier = set(original_reviewers(store, data.appeal_of or "", data.member_id))
    reviewers = reviewers_of(data)
    again = sorted(earlier & {r.reviewer_id for r in reviewers})
    if again:
        raise tool_error(RECONSIDERATION_REVIEWER, f"{', '.join(again)} decided {data.appeal_of}: a reconsideration"
                                                   " is decided by a physician who took no part in it")
    if not any(r.role == "md" for r in reviewers):
        raise tool_error(RECONSIDERATION_REVIEWER, "a reconsideration is decided by a physician (role md): none "
                                                   "approved it")


def write_claim_response(store: CareRecordStore, data: WriteDeterminationInput,
                         criteria: CriteriaSet | None = None) -> WriteResult:
    """Write the ClaimResponse (and, for a pend, its information-request Task; for a deny or partial, the member's
    notice, :mod:`tools.notice`) once per idempotency key. ``criteria``: the set the run applied (default: the
    shipped one), whose wording the notice quotes when its version is the determination's."""
    claim = store.get("Claim", data.claim_id)
    if claim is None or member_of(claim) != data.member_id:
        raise tool_error(CLAIM_NOT_FOUND, f"no Claim/{data.claim_id} for member {data.member_id!r}: check both ids")
    coverage = store.get("Coverage", data.coverage_id)
    if coverage is None or member_of(coverage) != data.member_id:
        raise tool_error(CLAIM_NOT_FOUND,
                         f"no Coverage/{data.coverage_id} for member {data.member_id!r}: use the request's coverage")
    _check_against_claim(data, claim)
    if data.appeal_of:
        _check_reconsideration(store, data)
    # The workflow's guardrails already route adverse actions to reviewers; this is the last line,
    # so a bug upstream can still never issue a denial, reduction or delay without a human.
    if service_effect(data.arguments) != "none" and not data.approved_by:
        raise tool_error(APPROVAL_REQUIRED,
                         f"a {data.arguments.outcome} {service_effect(data.arguments)} the member's services and"
                         " needs a reviewer: pass approved_by")
    resources = [build_claim_response(data, claim, coverage)]
    if data.arguments.outcome == "pend":
        resources.append(build_information_request(data, claim))
    if data.arguments.outcome in NOTICE_OUTCOMES:
        resources.append(build_notice(data, claim, coverage, resources[0]["id"],
                                      criteria if criteria is not None else load_criteria()))
    if data.arguments.outcome in NOTICE_OUTCOMES:
        # A notice is a contact: written under the member's contact lock, so a reminder's budget check cannot
        # miss it while it is being written (tools.outreach).
        stored, created = store.create_once_guarded(resources, data.idempotency_key,
                                                    lock=contact_lock(data.member_id))
    else:
        stored, created = store.create_once(resources, data.idempotency_key)
    return WriteResult(
        reference=f"ClaimResponse/{stored[0]['id']}",
        created=created,
        related=[f"{r['resourceType']}/{r['id']}" for r in stored[1:]],
    )
