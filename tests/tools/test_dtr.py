"""Tests for tools.dtr: the Questionnaire of a policy's criteria, its FHIRPath pre-fill, and the package request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from tools.criteria import criteria_version_id, load_criteria
from tools.dtr import (
    CPT,
    HCPCS,
    INITIAL_EXPRESSION,
    DtrRequestError,
    build_questionnaire,
    member_records,
    package,
    parse_package_request,
    prefill,
)

CRITERIA = load_criteria()
MRI = CRITERIA.policy_for("72148")
BASE = "https://payer.example"
NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def _condition(cid: str, display: str, *, verification: str = "confirmed", member: str = "pt-1") -> dict[str, Any]:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{member}"},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.16",
                                 "display": display}]}}


def _answers(response: dict[str, Any]) -> dict[str, list[Any]]:
    return {item["linkId"]: [next(v for k, v in a.items() if k.startswith("value")) for a in item["answer"]]
            for item in response["item"]}


def _parameters(*parameters: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parameters)}


COVERAGE = {"name": "coverage", "valueReference": {"reference": "Coverage/cov-1"}}


def _order(code: str, system: str = CPT) -> dict[str, Any]:
    return {"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "sr-1", "status": "draft",
                                          "intent": "order", "subject": {"reference": "Patient/pt-1"},
                                          "code": {"coding": [{"system": system, "code": code}]}}}


def test_the_questionnaire_has_one_item_per_criterion_with_the_policy_codes() -> None:
    """linkId = criterion id, text = its description, code = the policy's service codes; url and version name the
    criteria version; every criterion has its records, free-text and attachment items."""
    questionnaire = build_questionnaire(CRITERIA, MRI, base_url=BASE)
    Questionnaire.model_validate(questionnaire)  # R4B

    criteria_items = [i for i in questionnaire["item"] if i["type"] == "boolean"]
    assert [(c.criterion_id, c.description) for c in MRI.criteria] == [(i["linkId"], i["text"]) for i in criteria_items]
    assert all([{"system": CPT, "code": c} for c in MRI.codes] == i["code"] for i in criteria_items)
    assert ("https://payer.example/fhir/Questionnaire/um-lumbar-spine-mri", criteria_version_id(CRITERIA)) == (
        questionnaire["url"], questionnaire["version"])
    assert {f"{c.criterion_id}.{part}": kind for c in MRI.criteria
            for part, kind in (("source", "reference"), ("evidence", "string"), ("attachment", "attachment"))} == {
        i["linkId"]: i["type"] for i in questionnaire["item"] if i["type"] != "boolean"}
    assert all(i["extension"][0]["url"] == INITIAL_EXPRESSION
               and i["extension"][0]["valueExpression"]["language"] == "text/fhirpath"
               for i in questionnaire["item"] if i["type"] in ("boolean", "reference"))


def test_home_health_items_carry_hcpcs_codes() -> None:
    """The code system follows the code's shape: HCPCS for G0151."""
    questionnaire = build_questionnaire(CRITERIA, CRITERIA.policy_for("G0151"), base_url=BASE)
    assert {HCPCS} == {c["system"] for c in questionnaire["item"][0]["code"]}


def test_prefill_answers_a_criterion_a_stored_record_documents_and_references_it() -> None:
    """A Condition 'Radiculopathy' answers the neurological-deficit criterion true, citing the Condition; an
    Observation of a straight-leg raise answers the examination; the therapy criterion stays unanswered."""
    records = [_condition("cond-1", "Radiculopathy, lumbar region"),
               {"resourceType": "Observation", "id": "obs-1", "status": "final",
                "subject": {"reference": "Patient/pt-1"}, "code": {"text": "Straight leg raise test"}}]
    questionnaire = build_questionnaire(CRITERIA, MRI, base_url=BASE)
    response = prefill(questionnaire, records, patient_id="pt-1", authored=NOW, response_id="qr-1")
    QuestionnaireResponse.model_validate(response)  # R4B

    assert {"neurological-deficit-or-failed-therapy": [True],
            "neurological-deficit-or-failed-therapy.source": [{"reference": "Condition/cond-1"}],
            "neurological-examination": [True],
            "neurological-examination.source": [{"reference": "Observation/obs-1"}]} == _answers(response)
    assert f"{questionnaire['url']}|{questionnaire['version']}" == response["questionnaire"]
    assert ("in-progress", "Patient/pt-1") == (response["status"], response["subject"]["reference"])
    origin = response["item"][0]["answer"][0]["extension"][0]
    assert [{"url": "source", "valueCode": "auto-server"}] == origin["extension"]


def test_refuted_records_and_other_phrases_answer_nothing() -> None:
    """A refuted Condition, an entered-in-error Observation and an unrelated Condition leave every item empty."""
    records = [_condition("cond-1", "Radiculopathy", verification="refuted"),
               _condition("cond-2", "Essential hypertension"),
               {"resourceType": "Observation", "id": "obs-1", "status": "entered-in-error",
                "code": {"text": "Neurological exam"}}]
    response = prefill(build_questionnaire(CRITERIA, MRI, base_url=BASE), records, patient_id="pt-1",
                       authored=NOW, response_id="qr-1")
    assert [] == response["item"]


def test_a_completed_procedure_documents_a_home_health_skilled_need() -> None:
    """A completed Procedure 'Physical therapy' answers skilled-need; a not-done one would not."""
    policy = CRITERIA.policy_for("G0151")
    done = {"resourceType": "Procedure", "id": "proc-1", "status": "completed",
            "subject": {"reference": "Patient/pt-1"}, "code": {"coding": [{"display": "Physical therapy"}]}}
    not_done = {**done, "id": "proc-2", "status": "not-done"}
    response = prefill(build_questionnaire(CRITERIA, policy, base_url=BASE), [done, not_done],
                       patient_id="pt-1", authored=NOW, response_id="qr-1")
    assert [{"reference": "Procedure/proc-1"}] == _answers(response)["skilled-need.source"]


def test_member_records_come_from_the_records_store(store) -> None:  # noqa: ANN001
    """The member's stored Conditions are read from the store, another member's are not."""
    store.put_many([_condition("cond-mine", "Foot drop"), _condition("cond-theirs", "Foot drop", member="pt-2")])
    assert ["cond-mine"] == [r["id"] for r in member_records(store, "pt-1")]


def test_package_bundles_the_questionnaire_and_its_prefilled_response() -> None:
    """The output Parameters hold one PackageBundle (Questionnaire + QuestionnaireResponse) per service, and an
    information outcome for ordered codes that need no documentation."""
    asked = parse_package_request(_parameters(COVERAGE, _order("72148"), _order("99213")), CRITERIA)
    coverage = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
                "beneficiary": {"reference": "Patient/pt-1"}, "payor": [{"reference": "Organization/payer-x"}]}
    output = package(asked, CRITERIA, coverage=coverage, records=[_condition("cond-1", "Cauda equina syndrome")],
                     base_url=BASE, now=NOW)
    Parameters.model_validate(output)  # R4B

    (bundle,) = [p["resource"] for p in output["parameter"] if p["name"] == "PackageBundle"]
    (outcome,) = [p["resource"] for p in output["parameter"] if p["name"] == "operationOutcome"]
    questionnaire, response = (e["resource"] for e in bundle["entry"])
    assert ("Questionnaire", "QuestionnaireResponse") == (questionnaire["resourceType"], response["resourceType"])
    assert [True] == _answers(response)["neurological-deficit-or-failed-therapy"]
    assert "99213" in outcome["issue"][0]["diagnostics"]


def test_a_questionnaire_canonical_from_the_crd_card_is_accepted() -> None:
    """The canonical the CRD card linked (url|version) names the policy."""
    canonical = f"{BASE}/fhir/Questionnaire/um-snf-admission|{criteria_version_id(CRITERIA)}"
    asked = parse_package_request(_parameters(COVERAGE, {"name": "questionnaire", "valueCanonical": canonical}),
                                  CRITERIA)
    assert ("cov-1", ["snf-admission"]) == (asked.coverage_id, [p.policy_id for p in asked.policies])


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"resourceType": "Bundle"}, 400, "not a FHIR Parameters"),
    (_parameters(_order("72148")), 400, "no `coverage` parameter"),
    (_parameters(COVERAGE), 400, "neither an `order` nor a `questionnaire`"),
    (_parameters({"name": "coverage", "valueReference": {"reference": "Patient/pt-1"}}, _order("72148")), 400,
     "valueReference `Coverage/<id>`"),
    (_parameters(COVERAGE, {"name": "order", "resource": {"resourceType": "Patient"}}), 400, "no request resource"),
    (_parameters(COVERAGE, _order("99213")), 422, "no documentation criteria cover 99213"),
    (_parameters(COVERAGE, {"name": "questionnaire", "valueCanonical": f"{BASE}/fhir/Questionnaire/um-nope"}), 422,
     "no questionnaire 'um-nope'"),
    (_parameters(COVERAGE, {"name": "questionnaire",
                            "valueCanonical": f"{BASE}/fhir/Questionnaire/um-snf-admission|old"}), 422,
     "not the criteria in force"),
])
def test_bad_input_names_the_problem_and_its_status(body: dict[str, Any], status: int, message: str) -> None:
    """Each unusable request is a DtrRequestError with the HTTP status a FHIR server uses and the fix."""
    with pytest.raises(DtrRequestError, match=message) as refused:
        parse_package_request(body, CRITERIA)
    assert status == refused.value.status


def test_orders_for_another_member_than_the_coverage_are_refused() -> None:
    """The response is pre-filled from the coverage's member: an order for someone else is 422, nothing built."""
    asked = parse_package_request(_parameters(COVERAGE, _order("72148")), CRITERIA)
    coverage = {"resourceType": "Coverage", "id": "cov-1", "status": "active",
                "beneficiary": {"reference": "Patient/pt-2"}, "payor": [{"reference": "Organization/payer-x"}]}
    with pytest.raises(DtrRequestError, match="the orders are for Patient/pt-1 but Coverage/cov-1") as refused:
        package(asked, CRITERIA, coverage=coverage, records=[], base_url=BASE, now=NOW)
    assert 422 == refused.value.status


def test_stored_observations_and_procedures_reach_the_prefill(store) -> None:  # noqa: ANN001
    """Observations and Procedures are the member's records too (store.records.MEMBER_PATHS): a stored
    straight-leg-raise Observation answers the examination criterion."""
    observation = {"resourceType": "Observation", "id": "obs-slr-1", "status": "final",
                   "subject": {"reference": "Patient/pt-obs-1"}, "code": {"text": "Straight leg raise test"}}
    procedure = {"resourceType": "Procedure", "id": "proc-pt-1", "status": "completed",
                 "subject": {"reference": "Patient/pt-obs-1"}, "code": {"text": "Physical therapy"}}
    store.put_many([observation, procedure])
    records = member_records(store, "pt-obs-1")
    assert {("Observation", "obs-slr-1"), ("Procedure", "proc-pt-1")} <= {(r["resourceType"], r["id"]) for r in records}
    response = prefill(build_questionnaire(CRITERIA, MRI, base_url=BASE), records, patient_id="pt-obs-1",
                       authored=NOW, response_id="qr-obs-1")
    assert [{"reference": "Observation/obs-slr-1"}] == _answers(response)["neurological-examination.source"]
