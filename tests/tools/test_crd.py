"""Tests for tools.crd: CDS Hooks requests checked, and each ordered item answered from the criteria set."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from tools.crd import (
    COVERAGE_INFORMATION,
    PREFETCH,
    CdsRequestError,
    UnknownService,
    answer,
    discovery,
    parse_hook_request,
    pick_coverage,
)
from tools.criteria import criteria_version_id, load_criteria
from tools.dtr import CPT, HCPCS

CRITERIA = load_criteria()
TODAY = date(2026, 12, 7)
BASE = "https://payer.example/"
SIGN = "careloom-crd-order-sign"
SELECT = "careloom-crd-order-select"


def _order(order_id: str, code: str, system: str = CPT) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": order_id, "status": "draft", "intent": "order",
            "subject": {"reference": "Patient/pt-1"}, "code": {"coding": [{"system": system, "code": code}]}}


def _coverage(status: str = "active", end: str = "2099-12-31") -> dict[str, Any]:
    return {"resourceType": "Coverage", "id": "cov-1", "status": status, "beneficiary": {"reference": "Patient/pt-1"},
            "payor": [{"reference": "Organization/payer-x"}], "period": {"start": "2020-01-01", "end": end}}


def _request(*orders: dict[str, Any], hook: str = "order-sign", prefetch: bool = True,
             selections: list[str] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"userId": "Practitioner/dr-1", "patientId": "pt-1", "draftOrders": {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]}}
    if selections is not None:
        context["selections"] = selections
    body: dict[str, Any] = {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": context}
    if prefetch:
        body["prefetch"] = {"patient": {"resourceType": "Patient", "id": "pt-1"},
                            "coverage": {"resourceType": "Bundle", "type": "searchset",
                                         "entry": [{"resource": _coverage()}]}}
    return body


def _info(order: dict[str, Any]) -> dict[str, Any]:
    """The coverage-information sub-extensions of an updated order, by url."""
    (extension,) = [e for e in order["extension"] if e["url"] == COVERAGE_INFORMATION]
    return {part["url"]: next(v for k, v in part.items() if k.startswith("value")) for part in extension["extension"]}


def test_discovery_lists_order_select_and_order_sign_with_patient_and_coverage_prefetch() -> None:
    """GET /cds-services: one service per hook, both prefetching the patient and their active coverage."""
    services = discovery()["services"]
    assert {("order-select", SELECT), ("order-sign", SIGN)} == {(s["hook"], s["id"]) for s in services}
    assert all(PREFETCH == s["prefetch"] for s in services)
    assert "Patient/{{context.patientId}}" == PREFETCH["patient"]


def test_an_item_a_policy_covers_needs_prior_auth_with_its_criteria_and_questionnaire() -> None:
    """CPT 72148 is in the lumbar-spine MRI policy: auth-needed, doc-needed clinical, the questionnaire of that
    policy at the criteria version, on the card and in the order's extension."""
    hook = parse_hook_request(SIGN, _request(_order("sr-mri", "72148")))
    response = answer(hook, _coverage(), CRITERIA, today=TODAY, base_url=BASE)
    version = criteria_version_id(CRITERIA)
    canonical = f"https://payer.example/fhir/Questionnaire/um-lumbar-spine-mri|{version}"

    (card,) = response["cards"]
    (action,) = response["systemActions"]
    info = _info(action["resource"])
    assert ("update", "ServiceRequest", "sr-mri") == (action["type"], action["resource"]["resourceType"],
                                                      action["resource"]["id"])
    assert {"coverage": {"reference": "Coverage/cov-1"}, "covered": "covered", "pa-needed": "auth-needed",
            "doc-needed": "clinical", "doc-purpose": "withpa", "questionnaire": canonical,
            "date": "2026-12-07"} == {k: v for k, v in info.items() if k != "coverage-assertion-id"}
    assert info["coverage-assertion-id"].startswith("crd-")
    assert ("warning", version) == (card["indicator"], card["source"]["label"].rsplit(" ", 1)[-1])
    assert card["summary"].startswith("Prior authorization needed for 72148") and len(card["summary"]) < 140
    assert all(c.criterion_id in card["detail"] for c in CRITERIA.policy_for("72148").criteria)
    assert [("absolute", canonical.split("|")[0])] == [(link["type"], link["url"]) for link in card["links"]]
    assert {"system": "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp", "code": "coverage-info",
            "display": "Coverage Information"} == card["source"]["topic"]
    ServiceRequest.model_validate(action["resource"])  # R4B


def test_an_item_no_policy_covers_needs_no_auth_and_no_documentation() -> None:
    """A code outside the criteria (CPT 99213) is no-auth: no doc-needed and no questionnaire (crd-ci-q1)."""
    hook = parse_hook_request(SIGN, _request(_order("sr-visit", "99213"), _order("sr-hh", "G0151", HCPCS)))
    response = answer(hook, _coverage(), CRITERIA, today=TODAY, base_url=BASE)

    first, second = (_info(a["resource"]) for a in response["systemActions"])
    assert ("no-auth", False, False) == (first["pa-needed"], "doc-needed" in first, "questionnaire" in first)
    assert "auth-needed" == second["pa-needed"]
    assert second["questionnaire"].startswith("https://payer.example/fhir/Questionnaire/um-home-health|")
    assert ["info", "warning"] == [c["indicator"] for c in response["cards"]]
    assert "links" not in response["cards"][0]


def test_coverage_not_in_force_is_not_covered_without_pa_needed() -> None:
    """A cancelled coverage answers not-covered and, by crd-ci-q2, no pa-needed."""
    hook = parse_hook_request(SIGN, _request(_order("sr-mri", "72148")))
    response = answer(hook, _coverage(status="cancelled"), CRITERIA, today=TODAY, base_url=BASE)
    info = _info(response["systemActions"][0]["resource"])
    assert ("not-covered", False) == (info["covered"], "pa-needed" in info)


def test_order_select_answers_only_the_selected_orders() -> None:
    """order-select answers for context.selections, not for every draft order."""
    body = _request(_order("sr-mri", "72148"), _order("sr-visit", "99213"), hook="order-select",
                    selections=["ServiceRequest/sr-visit"])
    hook = parse_hook_request(SELECT, body)
    response = answer(hook, _coverage(), CRITERIA, today=TODAY, base_url=BASE)
    assert ["sr-visit"] == [a["resource"]["id"] for a in response["systemActions"]]


def test_a_second_answer_replaces_the_coverage_information_of_the_same_coverage() -> None:
    """An order that already carries this coverage's extension gets it replaced, not duplicated."""
    order = _order("sr-mri", "72148")
    first = answer(parse_hook_request(SIGN, _request(order)), _coverage(), CRITERIA, today=TODAY, base_url=BASE)
    updated = first["systemActions"][0]["resource"]
    again = answer(parse_hook_request(SIGN, _request(copy.deepcopy(updated))), _coverage(), CRITERIA,
                   today=TODAY, base_url=BASE)
    assert 1 == sum(e["url"] == COVERAGE_INFORMATION for e in again["systemActions"][0]["resource"]["extension"])


def test_pick_coverage_prefers_the_one_in_force() -> None:
    """Of an ended and a current coverage the current one is used; another member's coverage never is."""
    ended = {**_coverage(end="2025-12-31"), "id": "cov-old"}
    other = {**_coverage(), "id": "cov-other", "beneficiary": {"reference": "Patient/pt-2"}}
    assert "cov-1" == pick_coverage([ended, other, _coverage()], "pt-1", TODAY)["id"]
    assert "cov-old" == pick_coverage([ended, other], "pt-1", TODAY)["id"]
    assert pick_coverage([other], "pt-1", TODAY) is None


def test_an_unknown_service_id_is_refused() -> None:
    """A service id not in discovery raises UnknownService naming the known ids."""
    with pytest.raises(UnknownService, match=SIGN):
        parse_hook_request("no-such-service", _request(_order("sr-mri", "72148")))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b.update(hook="patient-view"), "call the service of your hook"),
    (lambda b: b.pop("hookInstance"), "hookInstance is missing"),
    (lambda b: b["context"].pop("patientId"), "context.patientId is missing"),
    (lambda b: b["context"].update(draftOrders=[]), "not a FHIR Bundle"),
    (lambda b: b["context"]["draftOrders"].update(entry=[]), "has no entries"),
    (lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].pop("code"), "has no code"),
    (lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].pop("id"), "has no id"),
    (lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(status="bogus"), "required value set"),
    (lambda b: b["context"]["draftOrders"]["entry"][0].update(resource={"resourceType": "Patient", "id": "x"}),
     "holds a Patient"),
    (lambda b: b["prefetch"].update(patient={"resourceType": "Patient", "id": "pt-9"}), "not context.patientId"),
    (lambda b: b["prefetch"].update(coverage={"resourceType": "Claim"}), "prefetch.coverage"),
    (lambda b: b["context"]["draftOrders"]["entry"][0]["resource"].update(subject={"reference": "Patient/pt-2"}),
     "is for Patient/pt-2, not context.patientId"),
])
def test_a_malformed_request_names_the_problem(mutate, message: str) -> None:  # noqa: ANN001
    """Each malformed hook request is a CdsRequestError whose message names the fix."""
    body = _request(_order("sr-mri", "72148"))
    mutate(body)
    with pytest.raises(CdsRequestError, match=message):
        parse_hook_request(SIGN, body)


def test_order_select_without_selections_is_refused() -> None:
    """order-select must say which orders are selected, and only orders of the Bundle."""
    with pytest.raises(CdsRequestError, match="context.selections is missing"):
        parse_hook_request(SELECT, _request(_order("sr-mri", "72148"), hook="order-select"))
    with pytest.raises(CdsRequestError, match="not in context.draftOrders"):
        parse_hook_request(SELECT, _request(_order("sr-mri", "72148"), hook="order-select",
                                            selections=["ServiceRequest/other"]))


def test_without_prefetch_the_request_asks_the_records() -> None:
    """No prefetch: patient and coverages are None, for the route to read from the records store."""
    hook = parse_hook_request(SIGN, _request(_order("sr-mri", "72148"), prefetch=False))
    assert (None, None) == (hook.patient, hook.coverages)
