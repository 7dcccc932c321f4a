"""Tests for tools.qr_answers: a provider's completed DTR QuestionnaireResponse checked against its request, and its
answers as attested citations merged into the notes' findings."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from tools.criteria import criteria_version_id, load_criteria
from tools.dtr import CPT, build_questionnaire, prefill
from tools.evidence import Citation, CriterionFinding
from tools.evidence_review import cite
from tools.qr_answers import (
    QR_CONTEXT,
    QuestionnaireAnswerError,
    attested_findings,
    check_response,
    merge_finding,
    request_of,
)

CRITERIA = load_criteria()
MRI = CRITERIA.policy_for("72148")
HOME_HEALTH = CRITERIA.policy_for("G0151")
VERSION = criteria_version_id(CRITERIA)
BASE = "https://payer.example"
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
SECRET = "Jane Roe told me her HIV status"
"""Free text planted in an answer: no refusal may quote it."""
CLAIM = {"resourceType": "Claim", "id": "claim-1",
         "item": [{"sequence": 1, "productOrService": {"coding": [{"system": CPT, "code": "72148"}]}}]}
RADICULOPATHY = {"resourceType": "Condition", "id": "cond-1", "subject": {"reference": "Patient/pt-1"},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.16",
                                      "display": "Radiculopathy, lumbar region"}]}}


def _context(claim_id: str) -> dict[str, Any]:
    return {"url": QR_CONTEXT, "valueReference": {"reference": f"Claim/{claim_id}"}}


def _response(policy_code: str = "72148", **changes: Any) -> dict[str, Any]:  # noqa: ANN401 - any JSON
    """The pre-filled response (neurological deficit: yes, from the Condition) completed by hand: conservative
    therapy answered no with a free-text note, attested by Practitioner/pr-1, about Claim/claim-1."""
    questionnaire = build_questionnaire(CRITERIA, CRITERIA.policy_for(policy_code), base_url=BASE)
    response = prefill(questionnaire, [RADICULOPATHY] if policy_code == "72148" else [], patient_id="pt-1",
                       authored=NOW, response_id="qr-1")
    response.update(status="completed", author={"reference": "Practitioner/pr-1"}, extension=[_context("claim-1")])
    if policy_code == "72148":
        response["item"] += [{"linkId": "conservative-therapy-6-weeks", "answer": [{"valueBoolean": False}]},
                             {"linkId": "conservative-therapy-6-weeks.evidence", "answer": [{"valueString": SECRET}]}]
    response.update(changes)
    return {k: v for k, v in response.items() if v is not None}


def _check(body: Any) -> Any:  # noqa: ANN401 - any JSON
    return check_response(body, claim=CLAIM, member_id="pt-1", criteria=CRITERIA)


def _items(*items: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.update(item=[*r["item"], *items])


def test_a_completed_response_to_the_request_is_accepted_with_its_attester() -> None:
    """The policy, the author and the criteria answered yes or no, in item order."""
    checked = _check(_response())
    assert ("lumbar-spine-mri", "Practitioner/pr-1") == (checked.policy_id, checked.attested_by)
    assert ["neurological-deficit-or-failed-therapy", "conservative-therapy-6-weeks"] == checked.answered
    assert "qr-1" == checked.response["id"]


@pytest.mark.parametrize("author", ["PractitionerRole/role-1", "Organization/org-1"])
def test_an_amended_response_by_a_role_or_organization_is_accepted(author: str) -> None:
    """Amended counts as final; a PractitionerRole or an Organization may attest."""
    assert author == _check(_response(status="amended", author={"reference": author})).attested_by


def test_request_of_reads_the_claim_of_the_context_extension() -> None:
    """The same claim named twice is still one request."""
    assert "claim-9" == request_of(_response(extension=[_context("claim-9"), _context("claim-9")]))


@pytest.mark.parametrize(("body", "status", "code", "message"), [
    ([], 400, "structure", "not a FHIR QuestionnaireResponse"),
    ({"resourceType": "Bundle"}, 400, "structure", "not a FHIR QuestionnaireResponse"),
    (_response(extension=None), 400, "required", "add the extension .*qr-context with valueReference Claim/<id>"),
    (_response(extension=[{"url": QR_CONTEXT, "valueReference": {"reference": "Patient/pt-1"}}]), 400, "invalid",
     "is not Claim/<id>"),
    (_response(extension=[_context("claim-1"), _context("claim-2")]), 400, "invalid", "2 different requests"),
])
def test_request_of_refuses_a_response_that_names_no_single_claim(body: Any, status: int, code: str,  # noqa: ANN401
                                                                  message: str) -> None:
    """Each refusal has the status, the OperationOutcome code and the fix."""
    with pytest.raises(QuestionnaireAnswerError, match=message) as refused:
        request_of(body)
    assert (status, code) == (refused.value.status, refused.value.code)
    assert SECRET not in str(refused.value)


_REFUSALS: list[tuple[str, Callable[[dict[str, Any]], Any], int, str, str]] = [
    ("not a response", lambda r: r.update(resourceType="Bundle"), 400, "structure", "not a FHIR Questionnaire"),
    ("not R4", lambda r: r.update(authored="yesterday"), 400, "invalid", "not valid FHIR R4: authored"),
    ("free text not R4", _items({"linkId": "neurological-examination", "answer": [{"valueBoolean": SECRET}]}),
     400, "invalid", "not valid FHIR R4: item"),
    ("no context", lambda r: r.pop("extension"), 400, "required", "names no request"),
    ("other claim", lambda r: r.update(extension=[_context("claim-2")]), 422, "invalid",
     "answers another request, not Claim/claim-1"),
    ("in progress", lambda r: r.update(status="in-progress"), 422, "business-rule",
     "an in-progress response is not an attestation; complete it"),
    ("unknown questionnaire", lambda r: r.update(questionnaire=f"{BASE}/fhir/Questionnaire/um-nope|{VERSION}"), 422,
     "not-supported", "answer one of um-lumbar-spine-mri, um-home-health, um-snf-admission"),
    ("no questionnaire", lambda r: r.pop("questionnaire"), 422, "not-supported", "answer one of um-lumbar"),
    ("another service", lambda r: r.update(questionnaire=f"{BASE}/fhir/Questionnaire/um-home-health|{VERSION}"), 422,
     "invalid", "um-home-health is the questionnaire for another service .*: answer um-lumbar-spine-mri"),
    ("old version", lambda r: r.update(questionnaire=f"{BASE}/fhir/Questionnaire/um-lumbar-spine-mri|2025.1-x"), 422,
     "not-supported", f"answers version 2025.1-x; the criteria in force are {re.escape(VERSION)}: fetch the current"
                      r" questionnaire with \$questionnaire-package"),
    ("no version", lambda r: r.update(questionnaire=f"{BASE}/fhir/Questionnaire/um-lumbar-spine-mri"), 422,
     "not-supported", r"answers version \(none\)"),
    ("another member", lambda r: r.update(subject={"reference": "Patient/pt-2"}), 422, "invalid",
     "for another member"),
    ("patient author", lambda r: r.update(author={"reference": "Patient/pt-1"}), 422, "required",
     "does not say who attests it"),
    ("display-only author", lambda r: r.update(author={"display": "Dr. Who"}), 422, "required", "who attests"),
    ("unknown linkId", _items({"linkId": "favourite-colour", "answer": [{"valueString": SECRET}]}), 422, "invalid",
     "item linkId 'favourite-colour' is not an item of um-lumbar-spine-mri"),
    ("nothing answered", lambda r: r.update(item=[i for i in r["item"] if "." in i["linkId"]]), 422, "required",
     "answers no criterion of um-lumbar-spine-mri"),
]


@pytest.mark.parametrize(("change", "status", "code", "message"), [c[1:] for c in _REFUSALS],
                         ids=[c[0] for c in _REFUSALS])
def test_check_response_refuses_with_status_code_and_fix(change: Callable[[dict[str, Any]], Any], status: int,
                                                         code: str, message: str) -> None:
    """Each unusable response is refused with the HTTP status, the issue code and the fix, never quoting the
    free-text answer planted in it."""
    body = _response()
    change(body)
    with pytest.raises(QuestionnaireAnswerError, match=message) as refused:
        _check(body)
    assert (status, code) == (refused.value.status, refused.value.code)
    assert "Jane Roe" not in str(refused.value)


def test_a_claim_no_questionnaire_covers_is_told_so() -> None:
    """A request for an uncovered service names no questionnaire to answer instead."""
    claim = {**CLAIM, "item": [{"sequence": 1, "productOrService": {"coding": [{"system": CPT, "code": "99213"}]}}]}
    with pytest.raises(QuestionnaireAnswerError, match="answer nothing: no questionnaire of this plan") as refused:
        check_response(_response(), claim=claim, member_id="pt-1", criteria=CRITERIA)
    assert 422 == refused.value.status


def test_attested_findings_cite_each_answer_with_its_attester() -> None:
    """Yes is attested, no is refuted, unanswered is empty; in-progress responses and those of another policy's
    questionnaire are ignored; citations follow response then item order."""
    in_progress = _response(status="in-progress", item=[{"linkId": "neurological-examination",
                                                         "answer": [{"valueBoolean": True}]}])
    other_policy = _response("G0151", item=[{"linkId": "neurological-examination",
                                             "answer": [{"valueBoolean": True}]}])
    second = _response(author={"reference": "Organization/org-1"},
                       item=[{"linkId": "neurological-deficit-or-failed-therapy", "answer": [{"valueBoolean": True}]}])
    found = attested_findings([("qr-a", _response()), ("qr-b", in_progress), ("qr-c", other_policy),
                               ("qr-d", second)], MRI)

    yes = "attested: neurological-deficit-or-failed-therapy met"
    assert {
        "neurological-deficit-or-failed-therapy": (
            [Citation(document_id="QuestionnaireResponse/qr-a", start=0, end=1, term=yes,
                      attested_by="Practitioner/pr-1"),
             Citation(document_id="QuestionnaireResponse/qr-d", start=0, end=1, term=yes,
                      attested_by="Organization/org-1")], []),
        "conservative-therapy-6-weeks": ([], [Citation(
            document_id="QuestionnaireResponse/qr-a", start=2, end=3,
            term="attested: conservative-therapy-6-weeks not met", attested_by="Practitioner/pr-1")]),
        "neurological-examination": ([], []),
    } == found


def test_an_attested_citation_is_cited_with_its_attester() -> None:
    """The review's citation text names the response item and who attested it (a reference, never a name)."""
    (citation,), _ = attested_findings([("qr-a", _response())], MRI)["neurological-deficit-or-failed-therapy"]
    assert ("QuestionnaireResponse/qr-a#0-1: attested: neurological-deficit-or-failed-therapy met"
            " (attested by Practitioner/pr-1)") == cite(citation)


NOTE = Citation(document_id="DocumentReference/note-1", start=10, end=22, term="radiculopathy")
YES = Citation(document_id="QuestionnaireResponse/qr-a", start=0, end=1, term="attested: c met",
               attested_by="Practitioner/pr-1")
NO = Citation(document_id="QuestionnaireResponse/qr-b", start=0, end=1, term="attested: c not met",
              attested_by="Practitioner/pr-2")


@pytest.mark.parametrize(("notes", "attested", "refuted", "status"), [
    ("met", [], [], "met"),
    ("not_met", [YES], [], "met"),
    ("not_met", [YES], [NO], "not_met"),
    ("met", [], [NO], "not_met"),
    ("not_met", [], [], "not_met"),
])
def test_merge_finding_truth_table(notes: str, attested: list[Citation], refuted: list[Citation],
                                   status: str) -> None:
    """Met iff the notes or a provider document it and no provider answered no; every citation is kept."""
    finding = CriterionFinding(criterion_id="c", status=notes, citations=[NOTE] if notes == "met" else [],
                               contrary=[NOTE] if notes == "not_met" else [])
    merged = merge_finding(finding, attested, refuted)
    assert ("c", status) == (merged.criterion_id, merged.status)
    assert (finding.citations + attested, finding.contrary + refuted) == (merged.citations, merged.contrary)
