"""CRD (CDS Hooks) and DTR ($questionnaire-package) over a real socket, driven by httpx and fhirpy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.parameters import Parameters
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhirpy import AsyncFHIRClient

from api.routes_dtr import ACCESS_ACTION
from store.access_log import AccessLog
from store.connect import configured_database
from tests.api.conftest import auth
from tests.fhir_factory import Member, make_member
from tools.crd import COVERAGE_INFORMATION
from tools.criteria import criteria_for, criteria_version_id
from tools.dtr import CPT

SIGN = "/cds-services/careloom-crd-order-sign"


def _order(member: Member, code: str, order_id: str | None = None) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": order_id or f"sr-{uuid.uuid4().hex[:8]}", "status": "draft",
            "intent": "order", "subject": {"reference": f"Patient/{member.member_id}"},
            "code": {"coding": [{"system": CPT, "code": code}]}}


def _hook(member: Member, *orders: dict[str, Any], prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {
        "userId": "Practitioner/dr-1", "patientId": member.member_id,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]}}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _resource(member: Member, rtype: str) -> dict[str, Any]:
    return next(r for r in member.resources if r["resourceType"] == rtype)


def _info(order: dict[str, Any]) -> dict[str, Any]:
    (extension,) = [e for e in order["extension"] if e["url"] == COVERAGE_INFORMATION]
    return {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in extension["extension"]}


@pytest.fixture
def token(approvers: dict[str, str]) -> str:
    return approvers["cc.jones"]


async def test_discovery_needs_a_caller_and_lists_both_hooks(http: httpx.AsyncClient, token: str) -> None:
    """GET /cds-services is 401 without a token, and lists order-select and order-sign with their prefetch."""
    assert 401 == (await http.get("/cds-services")).status_code
    listed = await http.get("/cds-services", headers=auth(token))
    assert 200 == listed.status_code
    assert {"order-select", "order-sign"} == {s["hook"] for s in listed.json()["services"]}
    assert all({"patient", "coverage"} == set(s["prefetch"]) for s in listed.json()["services"])


async def test_order_sign_reads_patient_and_coverage_from_the_records_when_not_prefetched(
        http: httpx.AsyncClient, store, token: str, settings) -> None:  # noqa: ANN001
    """Without prefetch the member's stored Coverage is used; the MRI needs auth, the office visit does not."""
    member = make_member(store)
    mri, visit = _order(member, "72148"), _order(member, "99213")
    answered = await http.post(SIGN, json=_hook(member, mri, visit), headers=auth(token))
    assert 200 == answered.status_code, answered.text

    cards, actions = answered.json()["cards"], answered.json()["systemActions"]
    mri_info, visit_info = (_info(a["resource"]) for a in actions)
    coverage_ref = {"reference": f"Coverage/{_resource(member, 'Coverage')['id']}"}
    version = criteria_version_id(criteria_for(settings))
    assert (coverage_ref, "auth-needed", "clinical") == (mri_info["coverage"], mri_info["pa-needed"],
                                                         mri_info["doc-needed"])
    assert mri_info["questionnaire"].endswith(f"/fhir/Questionnaire/um-lumbar-spine-mri|{version}")
    assert ("no-auth", None) == (visit_info["pa-needed"], visit_info.get("questionnaire"))
    assert (["warning", "info"], version) == ([c["indicator"] for c in cards],
                                              cards[0]["source"]["label"].rsplit(" ", 1)[-1])
    for action in actions:
        ServiceRequest.model_validate(action["resource"])  # R4B
    # The card's link is the Questionnaire itself, served from the same criteria.
    link = cards[0]["links"][0]["url"]
    fetched = await http.get(httpx.URL(link).path, headers=auth(token))
    assert (200, version) == (fetched.status_code, fetched.json()["version"])
    Questionnaire.model_validate(fetched.json())


async def test_order_sign_uses_the_prefetched_coverage(
        http: httpx.AsyncClient, store, token: str) -> None:  # noqa: ANN001
    """A prefetched cancelled Coverage answers not-covered, whatever the records hold."""
    member = make_member(store)
    coverage = {**_resource(member, "Coverage"), "status": "cancelled"}
    prefetch = {"patient": _resource(member, "Patient"),
                "coverage": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": coverage}]}}
    answered = await http.post(SIGN, json=_hook(member, _order(member, "72148"), prefetch=prefetch),
                               headers=auth(token))
    assert 200 == answered.status_code, answered.text
    info = _info(answered.json()["systemActions"][0]["resource"])
    assert ("not-covered", False) == (info["covered"], "pa-needed" in info)


async def test_cds_refusals(http: httpx.AsyncClient, store, token: str) -> None:  # noqa: ANN001
    """Unknown service 404, malformed request 400 naming the fix, unknown patient 412, no token 401."""
    member = make_member(store)
    body = _hook(member, _order(member, "72148"))
    unknown = await http.post("/cds-services/no-such-service", json=body, headers=auth(token))
    not_json = await http.post(SIGN, content=b"{oops", headers=auth(token))
    no_context = await http.post(SIGN, json={"hook": "order-sign", "hookInstance": "x"}, headers=auth(token))
    nobody = Member(member_id="pt-nobody", encounter_id="enc-none")
    stranger = await http.post(SIGN, json=_hook(nobody, _order(nobody, "72148")), headers=auth(token))
    anonymous = await http.post(SIGN, json=body)
    assert (404, 400, 400, 412, 401) == (unknown.status_code, not_json.status_code, no_context.status_code,
                                         stranger.status_code, anonymous.status_code)
    assert "GET /cds-services lists" in unknown.json()["detail"]
    assert "context is missing" in no_context.json()["detail"]
    assert "pt-nobody is not prefetched and not a member" in stranger.json()["detail"]


async def test_crd_card_to_dtr_package_prefilled_from_the_records(api_url: str, http: httpx.AsyncClient, store,
                                                                  token: str, settings) -> None:  # noqa: ANN001
    """A fhirpy client asks $questionnaire-package for the order the CRD card flagged: the Questionnaire is the one
    the card linked, and the stored Condition answers its criterion, cited."""
    started = datetime.now(UTC)
    member = make_member(store)
    condition = {"resourceType": "Condition", "id": f"cond-{uuid.uuid4().hex[:8]}",
                 "subject": {"reference": f"Patient/{member.member_id}"},
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M21.371",
                                      "display": "Foot drop, right foot"}]}}
    store.put_many([condition])
    order = _order(member, "72149")
    card = await http.post(SIGN, json=_hook(member, order), headers=auth(token))
    canonical = _info(card.json()["systemActions"][0]["resource"])["questionnaire"]

    fhir = AsyncFHIRClient(f"{api_url}/fhir", authorization=f"Bearer {token}")
    output = await fhir.execute("Questionnaire/$questionnaire-package", method="post", data={
        "resourceType": "Parameters", "parameter": [
            {"name": "coverage", "resource": _resource(member, "Coverage")},
            {"name": "order", "resource": order}]})
    Parameters.model_validate(output)  # R4B

    (bundle,) = [p["resource"] for p in output["parameter"] if p["name"] == "PackageBundle"]
    questionnaire, response = (e["resource"] for e in bundle["entry"])
    assert canonical == f"{questionnaire['url']}|{questionnaire['version']}" == response["questionnaire"]
    answers = {i["linkId"]: i["answer"] for i in response["item"]}
    assert [{"reference": f"Condition/{condition['id']}"}] == [
        a["valueReference"] for a in answers["neurological-deficit-or-failed-therapy.source"]]
    assert "conservative-therapy-6-weeks" not in answers  # nothing stored documents it: left for the provider
    assert f"Patient/{member.member_id}" == response["subject"]["reference"]
    # Both reads of the member's records are in the access log, by identifiers only.
    actions = [(e.action, e.outcome) for e in AccessLog(configured_database(settings)).entries(
        user_id="cc.jones", since=started)]
    assert {("crd.careloom-crd-order-sign", "shown"), (ACCESS_ACTION, "shown")} <= set(actions)


@pytest.mark.parametrize(("parameters", "status", "message"), [
    ({"resourceType": "Patient"}, 400, "not a FHIR Parameters"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "coverage", "valueReference": {"reference": "Coverage/cov-nowhere"}},
        {"name": "order", "resource": {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                                       "subject": {"reference": "Patient/x"},
                                       "code": {"coding": [{"system": CPT, "code": "72148"}]}}}]},
     404, "Coverage/cov-nowhere is not in the plan's records"),
    ({"resourceType": "Parameters", "parameter": [
        {"name": "coverage", "valueReference": {"reference": "Coverage/cov-nowhere"}},
        {"name": "order", "resource": {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                                       "subject": {"reference": "Patient/x"},
                                       "code": {"coding": [{"system": CPT, "code": "99213"}]}}}]},
     422, "no documentation criteria cover 99213"),
])
async def test_dtr_refusals_are_operation_outcomes(http: httpx.AsyncClient, token: str, parameters: dict[str, Any],
                                                   status: int, message: str) -> None:
    """Not Parameters 400, an unknown coverage 404, a service no criteria cover 422: each an OperationOutcome."""
    refused = await http.post("/fhir/Questionnaire/$questionnaire-package", json=parameters, headers=auth(token))
    assert (status, "application/fhir+json") == (refused.status_code, refused.headers["content-type"])
    OperationOutcome.model_validate(refused.json())
    assert message in refused.json()["issue"][0]["diagnostics"]


async def test_an_unknown_questionnaire_is_404(http: httpx.AsyncClient, token: str) -> None:
    """GET /fhir/Questionnaire/<unknown> is a 404 OperationOutcome listing the plan's questionnaires."""
    missing = await http.get("/fhir/Questionnaire/um-nope", headers=auth(token))
    assert 404 == missing.status_code
    assert "um-lumbar-spine-mri" in missing.json()["issue"][0]["diagnostics"]
