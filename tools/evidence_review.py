"""What the prior-authorization evidence review returns, and the citation format (the activities that produce it
are :mod:`tools.prior_auth_activities`).

``um.review_evidence`` reads the request's notes (inside the activity: note
text never enters history) and checks each requested service against the
plan's medical-policy criteria, returning criterion ids, statuses and
citation offsets. ``um.issue_determination`` writes the ClaimResponse (and,
for a pend, the information request to the provider).

The review's result is compact whatever the request's size (a 3,000-line Claim once made a 4.5 MB
result, over Temporal's 2 MB payload limit, on every attempt): each medical policy's findings appear once,
not once per line that uses the policy; a line is its sequence, code and quantity; a criterion lists at most
:data:`MAX_CITATIONS` citations of each kind and counts the rest; at most :data:`MAX_LISTED_NOTES` notes not
fully read are named, the rest counted. ``EvidenceReview.services`` rebuilds the per-line view the agent
reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, model_validator

from tools.criteria import Criterion
from tools.evidence import Citation, CriterionFinding, NoteReading
from tools.pas_models import RequestedService

__all__ = ["MAX_CITATIONS", "MAX_LISTED_NOTES", "CriterionResult", "EvidenceReview", "PolicyReview",
           "ReviewEvidenceInput", "ReviewedLine", "ServiceReview", "UNKNOWN_SERVICE_CODE",
           "REQUEST_NOT_FOUND", "cite", "criterion_result"]

UNKNOWN_SERVICE_CODE = "UnknownServiceCode"
REQUEST_NOT_FOUND = "PriorAuthRequestNotFound"

MAX_CITATIONS = 20
"""Citations listed per criterion, for and against each: enough for a reviewer to open the notes at the
evidence (and more than any criterion's ``min_citations``); the status counts every mention."""
MAX_LISTED_NOTES = 20
"""Notes not fully read that the review names; more are counted."""


class ReviewEvidenceInput(BaseModel):
    claim_id: str
    items: list[RequestedService]
    questionnaire_responses: list[str] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="Stored ids of the DTR QuestionnaireResponses to read besides the notes: those sent with the "
                    "request and those that answered a pend. Each is checked again against the request.")


class CriterionResult(CriterionFinding):
    """A finding with the criterion's text (from the plan's criteria file, not from the notes)."""

    description: str
    min_citations: int = 1
    citations_omitted: int = Field(default=0, ge=0, description=(
        f"Supporting mentions found beyond the first {MAX_CITATIONS} listed: counted, not listed."))
    contrary_omitted: int = Field(default=0, ge=0, description=(
        f"Contrary mentions found beyond the first {MAX_CITATIONS} listed: counted, not listed."))

    @property
    def citations_found(self) -> int:
        """Every supporting mention found, listed or not."""
        return len(self.citations) + self.citations_omitted

    @property
    def contrary_found(self) -> int:
        """Every contrary mention found, listed or not."""
        return len(self.contrary) + self.contrary_omitted


class ServiceReview(BaseModel):
    """One requested line judged against its medical policy (a view: :attr:`EvidenceReview.services`)."""

    sequence: int
    code: str
    quantity: int
    policy_id: str
    title: str
    auto_approve_when_met: bool
    criteria: list[CriterionResult]

    @property
    def all_met(self) -> bool:
        return all(c.status == "met" for c in self.criteria)


class ReviewedLine(BaseModel):
    """A requested line: its medical policy is the one whose ``codes`` hold its code."""

    sequence: int
    code: str
    quantity: int


class PolicyReview(BaseModel):
    """One medical policy's findings, shared by every requested line it covers."""

    policy_id: str
    title: str
    auto_approve_when_met: bool
    codes: list[str] = Field(description="The requested codes this policy covers.")
    criteria: list[CriterionResult]


class EvidenceReview(BaseModel):
    """Criteria, statuses and citation offsets for every line: identifiers and codes, no note text."""

    criteria_version: str = Field(description="um-medical-policy@<version>+sha256:<digest> applied.")
    notes_read: int = Field(description="Notes of the request that were read (fully or, see below, in part).")
    notes_incomplete: int = Field(default=0, ge=0, description=(
        "Notes not fully read within the time budget: their unread part may hold evidence for or against, so "
        "the review is not complete and a person must decide."))
    incomplete_notes: list[NoteReading] = Field(default_factory=list, description=(
        f"The first {MAX_LISTED_NOTES} notes not fully read: id, length and how far they were read."))
    responses_read: int = Field(default=0, ge=0, exclude_if=lambda v: v == 0, description=(
        "QuestionnaireResponses whose attested answers were counted."))
    responses_not_used: list[str] = Field(default_factory=list, exclude_if=lambda v: not v, description=(
        "QuestionnaireResponse ids given but not counted (not stored, or no longer answering this request against "
        "the criteria in force): a reviewer sees which."))
    policies: list[PolicyReview] = Field(default_factory=list)
    lines: list[ReviewedLine] = Field(default_factory=list, description="The requested lines, in request order.")

    @model_validator(mode="before")
    @classmethod
    def _from_per_line_results(cls, data: Any) -> Any:
        # Histories recorded before the compact form hold one ServiceReview per line: replaying them must
        # decode to the same review, so a running case keeps its course after the upgrade.
        if not isinstance(data, dict) or "services" not in data:
            return data
        data = dict(data)
        policies: dict[str, dict[str, Any]] = {}
        lines = []
        for raw in data.pop("services"):
            service = ServiceReview.model_validate(raw)
            lines.append({"sequence": service.sequence, "code": service.code, "quantity": service.quantity})
            policy = policies.setdefault(service.policy_id, {
                "policy_id": service.policy_id, "title": service.title,
                "auto_approve_when_met": service.auto_approve_when_met, "codes": [], "criteria": service.criteria})
            if service.code not in policy["codes"]:
                policy["codes"].append(service.code)
        return {**data, "policies": list(policies.values()), "lines": lines}

    @property
    def fully_read(self) -> bool:
        """Whether every note was read to its end (else the review may miss evidence either way)."""
        return self.notes_incomplete == 0

    @property
    def services(self) -> list[ServiceReview]:
        """One review per requested line, in request order, each with its policy's findings."""
        by_code = {code: p for p in self.policies for code in p.codes}
        views = []
        for line in self.lines:
            policy = by_code[line.code]
            # Built, not validated: the parts were validated with the review.
            views.append(ServiceReview.model_construct(
                sequence=line.sequence, code=line.code, quantity=line.quantity, policy_id=policy.policy_id,
                title=policy.title, auto_approve_when_met=policy.auto_approve_when_met, criteria=policy.criteria))
        return views

    def criterion_ids(self) -> set[str]:
        return {c.criterion_id for p in self.policies for c in p.criteria}


def cite(citation: Citation) -> str:
    """``document#start-end: term``: where in which note the evidence is (and, for a questionnaire answer, who
    attested it)."""
    where = f"{citation.document_id}#{citation.start}-{citation.end}: {citation.term}"
    return f"{where} (attested by {citation.attested_by})" if citation.attested_by else where


def criterion_result(finding: CriterionFinding, criterion: Criterion) -> CriterionResult:
    """A criterion's finding as the review reports it (citations capped at :data:`MAX_CITATIONS`)."""
    return CriterionResult(
        criterion_id=finding.criterion_id, status=finding.status, description=criterion.description,
        min_citations=criterion.min_citations,
        citations=finding.citations[:MAX_CITATIONS], citations_omitted=max(0, len(finding.citations) - MAX_CITATIONS),
        contrary=finding.contrary[:MAX_CITATIONS], contrary_omitted=max(0, len(finding.contrary) - MAX_CITATIONS))
