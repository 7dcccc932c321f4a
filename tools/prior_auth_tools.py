"""The prior-authorization tools as Temporal activities.

``um.review_evidence`` reads the request's notes (inside the activity: note
text never enters history) and checks each requested service against the
plan's medical-policy criteria, returning criterion ids, statuses and
citation offsets. ``um.issue_determination`` writes the ClaimResponse (and,
for a pend, the information request to the provider).
"""

from __future__ import annotations


import structlog
from pydantic import BaseModel, Field
from temporalio import activity

from store.fhir_validation import InvalidResource
from store.records import CareRecordStore
from tools.criteria import CriteriaSet, criteria_version_id
from tools.determination import WriteDeterminationInput, write_claim_response
from tools.errors import INVALID_RESOURCE, tool_error
from tools.evidence import Citation, CriterionFinding, extract_evidence
from tools.pas_request import PriorAuthRequestError, RequestedService, load_notes
from tools.writes import WriteResult

__all__ = ["CriterionResult", "EvidenceReview", "PriorAuthTools", "ReviewEvidenceInput", "ServiceReview",
           "UNKNOWN_SERVICE_CODE", "cite"]

log = structlog.get_logger(__name__)

UNKNOWN_SERVICE_CODE = "UnknownServiceCode"
REQUEST_NOT_FOUND = "PriorAuthRequestNotFound"


class ReviewEvidenceInput(BaseModel):
    claim_id: str
    items: list[RequestedService]


class CriterionResult(CriterionFinding):
    """A finding with the criterion's text (from the plan's criteria file, not from the notes)."""

    description: str
    min_citations: int = 1


class ServiceReview(BaseModel):
    """One requested line judged against its medical policy."""

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


class EvidenceReview(BaseModel):
    """Criteria, statuses and citation offsets for every line: identifiers and codes, no note text."""

    criteria_version: str = Field(description="um-medical-policy@<version>+sha256:<digest> applied.")
    notes_read: int
    services: list[ServiceReview]

    def criterion_ids(self) -> set[str]:
        return {c.criterion_id for s in self.services for c in s.criteria}


def cite(citation: Citation) -> str:
    """``document#start-end: term``: where in which note the evidence is."""
    return f"{citation.document_id}#{citation.start}-{citation.end}: {citation.term}"


class PriorAuthTools:
    """The prior-authorization tools, bound to one store and the plan's criteria."""

    def __init__(self, store: CareRecordStore, criteria: CriteriaSet) -> None:
        self._store = store
        self._criteria = criteria
        self._version = criteria_version_id(criteria)

    def activities(self) -> list[object]:
        return [self.review_evidence, self.issue_determination]

    @activity.defn(name="um.review_evidence")
    def review_evidence(self, data: ReviewEvidenceInput) -> EvidenceReview:
        try:
            notes = load_notes(self._store, data.claim_id)
        except PriorAuthRequestError as err:
            raise tool_error(REQUEST_NOT_FOUND, str(err)) from None
        services = []
        for item in data.items:
            policy = self._criteria.policy_for(item.code)
            if policy is None:
                raise tool_error(UNKNOWN_SERVICE_CODE, (
                    f"no medical policy in {self._version} covers service code {item.code}: the criteria file "
                    "changed since the request was accepted; review it by hand"))
            by_id = {c.criterion_id: c for c in policy.criteria}
            findings = extract_evidence(notes, policy)
            services.append(ServiceReview(
                sequence=item.sequence, code=item.code, quantity=item.quantity, policy_id=policy.policy_id,
                title=policy.title, auto_approve_when_met=policy.auto_approve_when_met,
                criteria=[CriterionResult(**f.model_dump(), description=by_id[f.criterion_id].description,
                                          min_citations=by_id[f.criterion_id].min_citations) for f in findings]))
        review = EvidenceReview(criteria_version=self._version, notes_read=len(notes), services=services)
        info = activity.info()
        log.info("tool.review_evidence", workflow_id=info.workflow_id, notes=len(notes),
                 met=sum(c.status == "met" for s in services for c in s.criteria),
                 criteria=sum(len(s.criteria) for s in services))
        return review

    @activity.defn(name="um.issue_determination")
    def issue_determination(self, data: WriteDeterminationInput) -> WriteResult:
        try:
            result = write_claim_response(self._store, data)
        except InvalidResource as err:
            raise tool_error(INVALID_RESOURCE, f"issue_determination built an invalid resource: {err}") from None
        info = activity.info()
        log.info("tool.issue_determination", workflow_id=info.workflow_id, outcome=data.arguments.outcome,
                 reference=result.reference, created=result.created)
        return result


