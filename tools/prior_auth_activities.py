"""The prior-authorization tools as Temporal activities.

``um.review_evidence`` reads the request's notes (inside the activity: note text never enters history) and
checks each requested service against the plan's medical-policy criteria (:mod:`tools.evidence_review` is what
it returns). ``um.issue_determination`` writes the ClaimResponse (and, for a pend, the information request to
the provider) once the worker's gate has verified its approval.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from store.fhir_validation import InvalidResource
from store.records import CareRecordStore, member_of
from tools.criteria import CriteriaSet, ServicePolicy, criteria_version_id
from tools.determination import WriteDeterminationInput, write_claim_response
from tools.errors import INVALID_RESOURCE, tool_error
from tools.evidence import NOTE_TIME_BUDGET_S, REVIEW_TIME_BUDGET_S, read_evidence
from tools.evidence_review import (
    MAX_LISTED_NOTES,
    REQUEST_NOT_FOUND,
    UNKNOWN_SERVICE_CODE,
    EvidenceReview,
    PolicyReview,
    ReviewedLine,
    ReviewEvidenceInput,
    criterion_result,
)
from tools.pas_request import PriorAuthRequestError, load_notes
from tools.qr_answers import QuestionnaireAnswerError, attested_findings, check_response, merge_finding
from tools.writes import WriteGate, WriteResult

__all__ = ["PriorAuthTools"]

log = structlog.get_logger(__name__)


class PriorAuthTools:
    """The prior-authorization tools, bound to one store and the plan's criteria."""

    note_budget_s: float = NOTE_TIME_BUDGET_S
    """Seconds one note may take to read (an instance may lower it, e.g. a test)."""
    review_budget_s: float = REVIEW_TIME_BUDGET_S
    """Seconds all the notes of one request may take together."""

    def __init__(self, store: CareRecordStore, criteria: CriteriaSet, gate: WriteGate) -> None:
        self._store = store
        self._gate = gate  # verifies the determination's approval before it writes (guardrails.approval_check)
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
        policies: dict[str, ServicePolicy] = {}
        codes: dict[str, list[str]] = {}
        for item in data.items:
            policy = self._criteria.policy_for(item.code)
            if policy is None:
                raise tool_error(UNKNOWN_SERVICE_CODE, (
                    f"no medical policy in {self._version} covers service code {item.code}: the criteria file "
                    "changed since the request was accepted; review it by hand"))
            policies.setdefault(policy.policy_id, policy)
            listed = codes.setdefault(policy.policy_id, [])
            if item.code not in listed:
                listed.append(item.code)
        # Each policy's criteria are judged once over the notes, however many lines use the policy.
        reading = read_evidence(notes, list(policies.values()), note_budget_s=self.note_budget_s,
                                review_budget_s=self.review_budget_s)
        responses, not_used = self._responses(data)
        reviews = []
        for policy in policies.values():
            attested = attested_findings(responses, policy)
            findings = [merge_finding(f, *attested[f.criterion_id]) for f in reading.findings[policy.policy_id]]
            reviews.append(PolicyReview(
                policy_id=policy.policy_id, title=policy.title, auto_approve_when_met=policy.auto_approve_when_met,
                codes=codes[policy.policy_id],
                criteria=[criterion_result(f, c) for f, c in zip(findings, policy.criteria, strict=True)]))
        incomplete = reading.incomplete
        review = EvidenceReview(
            criteria_version=self._version, notes_read=len(notes), notes_incomplete=len(incomplete),
            incomplete_notes=incomplete[:MAX_LISTED_NOTES], policies=reviews,
            responses_read=len(responses), responses_not_used=not_used,
            lines=[ReviewedLine(sequence=i.sequence, code=i.code, quantity=i.quantity) for i in data.items])
        info = activity.info()
        # Counts and sizes only: no note text, no member data.
        log.info("tool.review_evidence", workflow_id=info.workflow_id, notes=len(notes),
                 notes_incomplete=len(incomplete), note_chars=sum(len(n.text) for n in notes),
                 lines=len(data.items), policies=len(reviews),
                 met=sum(c.status == "met" for p in reviews for c in p.criteria),
                 criteria=sum(len(p.criteria) for p in reviews), result_bytes=len(review.model_dump_json()))
        if incomplete:
            log.warning("tool.review_evidence.notes_not_fully_read", workflow_id=info.workflow_id,
                        notes=[n.document_id for n in incomplete[:MAX_LISTED_NOTES]],
                        note_budget_s=self.note_budget_s, review_budget_s=self.review_budget_s)
        return review

    def _responses(self, data: ReviewEvidenceInput) -> tuple[list[tuple[str, dict]], list[str]]:
        """The stored QuestionnaireResponses named, each checked again against the stored request (the run's
        input is not trusted: a response of another request, member or criteria version is not counted)."""
        claim = self._store.get("Claim", data.claim_id)
        member = member_of(claim) if claim is not None else None
        used: list[tuple[str, dict]] = []
        not_used: list[str] = []
        for response_id in dict.fromkeys(data.questionnaire_responses):
            stored = self._store.get("QuestionnaireResponse", response_id)
            try:
                if stored is None or claim is None or member is None:
                    raise QuestionnaireAnswerError(404, "not-found", "not stored")
                check_response(stored, claim=claim, member_id=member, criteria=self._criteria)
            except QuestionnaireAnswerError as refused:
                log.warning("tool.review_evidence.response_not_used", workflow_id=activity.info().workflow_id,
                            response=response_id, code=refused.code)
                not_used.append(response_id)
                continue
            used.append((response_id, stored))
        return used, not_used

    @activity.defn(name="um.issue_determination")
    def issue_determination(self, data: WriteDeterminationInput) -> WriteResult:
        approvers = self._gate.approvers(data, effect=data.arguments.effect(), tool="issue_determination")
        data = data.model_copy(update={"approved_by": approvers})
        try:
            result = write_claim_response(self._store, data, self._criteria)
        except InvalidResource as err:
            raise tool_error(INVALID_RESOURCE, f"issue_determination built an invalid resource: {err}") from None
        info = activity.info()
        log.info("tool.issue_determination", workflow_id=info.workflow_id, outcome=data.arguments.outcome,
                 reference=result.reference, created=result.created)
        return result
