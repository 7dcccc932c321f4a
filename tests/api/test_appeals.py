"""Appeals (reconsideration) end to end on the real dev server, worker and records store: a denial appealed by the
provider with new evidence is reconsidered by a physician who took no part in it and overturned; `$inquire` then
answers the approval. Each refusal (not a party, not adverse, a second appeal, past the deadline, bad evidence) is
an OperationOutcome with nothing stored or started."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError

from api import routes_fhir_pas
from runtime.errors import DecisionRefused
from store.fhir_validation import validate_resource
from store.submissions import SubmissionStore
from tests.api.conftest import auth
from tests.deciding import decide
from tests.dtr_answers import completed_response
from tests.pas_factory import MRI_NOTES_AGAINST, make_pas_request
from tests.prior_auth_runs import decision, pending
from tools.appeals import appeal_workflow_id
from tools.notice import NOTICE_EXTENSION
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthResult

SUBMITTER = "cc.jones"
FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def http(worker_http: httpx.AsyncClient) -> httpx.AsyncClient:
    return worker_http


@pytest_asyncio.fixture
async def runs(client: Client) -> AsyncIterator[list[str]]:
    """Workflow ids the test started; still open at the end: terminated."""
    ids: list[str] = []
    yield ids
    for workflow_id in ids:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate("test finished")


async def _denied(http: httpx.AsyncClient, client: Client, store, approvers, runs):  # noqa: ANN001, ANN202
    """A request denied by dr.rivera (md) and rn.kim: (request, the denial's ClaimResponse id, the deny item)."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    answer = await http.post("/fhir/Claim/$submit", json=request.bundle,
                             headers={**FHIR, **auth(approvers[SUBMITTER])})
    assert 200 == answer.status_code, answer.text
    workflow_id = SubmissionStore(store.db).latest(request.claim_id).workflow_id
    runs.append(workflow_id)
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    item = await pending(handle)
    assert "deny" == item.arguments.outcome
    await decide(client, workflow_id, decision(item, approver="dr.rivera", role="md"))
    await decide(client, workflow_id, decision(await pending(handle, required_role="rn"), approver="rn.kim",
                                               role="rn"))
    result: PriorAuthResult = await handle.result()
    assert "deny" == result.determination
    return request, result.claim_response.removeprefix("ClaimResponse/"), item


def _evidence(request, criteria: list[str]) -> dict[str, Any]:  # noqa: ANN001
    """New evidence for the appeal: the treating physician attests the criteria the denial cites."""
    return {"resourceType": "Parameters", "parameter": [
        {"name": "questionnaireResponse", "resource": completed_response(
            request.claim_id, request.member_id, dict.fromkeys(criteria, True), response_id="appeal-evidence")}]}


def _issue(answer: httpx.Response) -> tuple[int, str, str]:
    outcome = validate_resource(answer.json())
    return answer.status_code, outcome["issue"][0]["code"], outcome["issue"][0]["diagnostics"]


async def _not_started(client: Client, claim_response_id: str) -> None:
    with pytest.raises(RPCError):
        await client.get_workflow_handle(appeal_workflow_id(claim_response_id)).describe()


def _responses(store) -> int:  # noqa: ANN001
    return store.db.read(lambda r: r.one(
        "SELECT COUNT(*) FROM resources WHERE resource_type = 'QuestionnaireResponse'"))[0]


async def test_an_appeal_with_new_evidence_overturns_a_denial(http: httpx.AsyncClient, client: Client, store,
                                                              approvers, runs, monkeypatch) -> None:  # noqa: ANN001
    """The provider appeals with the physician's attestation: a reconsideration run on the 30-day clock, decided by
    an MD who took no part (the denying MD is refused), issues an approval that names the denial it reconsidered;
    $inquire answers it."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    request, denial, item = await _denied(http, client, store, approvers, runs)
    filed = datetime.now(UTC)
    answer = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", json=_evidence(
        request, item.arguments.criteria_cited), headers={**FHIR, **auth(approvers[SUBMITTER])})
    assert 202 == answer.status_code, answer.text
    appeal_id = appeal_workflow_id(denial)
    runs.append(appeal_id)
    assert appeal_id in answer.json()["issue"][0]["diagnostics"]

    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, appeal_id)
    reconsider = await pending(handle)
    assert ("approve", "md") == (reconsider.arguments.outcome, reconsider.required_role)
    assert any("reconsideration" in r for r in reconsider.reasons)
    assert timedelta(days=30) - timedelta(minutes=5) < reconsider.decide_by - filed <= timedelta(days=30, minutes=1)
    with pytest.raises(DecisionRefused, match="took part in the decision under appeal"):
        await decide(client, appeal_id, decision(reconsider, approver="dr.rivera", role="md"))
    await decide(client, appeal_id, decision(reconsider, approver="md.lee", role="md"))
    result: PriorAuthResult = await handle.result()

    assert ("completed", "approve", "md.lee", f"ClaimResponse/{denial}") == (
        result.status, result.determination, result.decided_by, result.appeal_of)
    approval = validate_resource(store.get(*result.claim_response.split("/")))
    assert "complete" == approval["outcome"] and approval["preAuthRef"].startswith("PA-")
    assert f"Reconsideration of ClaimResponse/{denial}." in [n["text"] for n in approval["processNote"]]
    inquiry = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": f"Claim/{request.claim_id}",
               "resource": {**request.bundle["entry"][0]["resource"], "id": request.claim_id}}]}
    current = await http.post("/fhir/Claim/$inquire", json=inquiry, headers={**FHIR, **auth(approvers[SUBMITTER])})
    assert 200 == current.status_code, current.text
    assert approval["id"] == current.json()["entry"][0]["resource"]["id"]


async def test_appeal_refusals_are_operation_outcomes_and_nothing_is_stored_or_started(
        http: httpx.AsyncClient, client: Client, store, approvers, runs) -> None:  # noqa: ANN001
    """Not a party (403), an approval (422), past the deadline (422), evidence for another member (422), an
    unknown determination (404), not signed in (401); a second appeal of the same denial (409)."""
    request, denial, item = await _denied(http, client, store, approvers, runs)
    before = _responses(store)
    as_submitter, as_nurse = auth(approvers[SUBMITTER]), auth(approvers["rn.kim"])

    refused = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", headers=as_nurse)
    assert (403, "forbidden") == _issue(refused)[:2] and "member of record" in _issue(refused)[2]
    wrong = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", headers={**FHIR, **as_nurse}, json={
        "resourceType": "Parameters", "parameter": [{"name": "requester",
                                                     "valueReference": {"reference": "Patient/someone-else"}}]})
    assert 403 == wrong.status_code
    other_member = _evidence(request, item.arguments.criteria_cited)
    other_member["parameter"][0]["resource"]["subject"] = {"reference": "Patient/someone-else"}
    bad = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", json=other_member,
                          headers={**FHIR, **as_submitter})
    assert (422, "invalid") == _issue(bad)[:2] and "another member" in _issue(bad)[2]
    assert 404 == (await http.post("/fhir/ClaimResponse/no-such/$appeal", headers=as_submitter)).status_code
    assert 401 == (await http.post(f"/fhir/ClaimResponse/{denial}/$appeal")).status_code
    assert 400 == (await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", content=b"{nope",
                                   headers={**FHIR, **as_submitter})).status_code
    await _not_started(client, denial)
    assert before == _responses(store)

    # Past the deadline the notice states.
    [notice] = [n for n in store.find_for_member("Communication", request.member_id)
                if {"reference": f"ClaimResponse/{denial}"} in n["about"]]
    reviewers = [e["valueString"] for e in notice["extension"] if e["url"] == f"{NOTICE_EXTENSION}-reviewer"]
    assert ["dr.rivera", "rn.kim"] == sorted(reviewers)
    original = dict(notice)
    expired = {**notice, "extension": [
        {**e, "valueDate": "2026-01-01"} if e["url"] == f"{NOTICE_EXTENSION}-appeal-deadline" else e
        for e in notice["extension"]]}
    store.put_many([expired])
    late = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", headers=as_submitter)
    assert (422, "business-rule") == _issue(late)[:2] and "deadline" in _issue(late)[2]
    await _not_started(client, denial)
    store.put_many([original])

    # The member's appeal, filed by plan staff, starts; a second appeal of the same denial is 409.
    member = {"resourceType": "Parameters", "parameter": [
        {"name": "requester", "valueReference": {"reference": f"Patient/{request.member_id}"}},
        {"name": "expedited", "valueBoolean": True}]}
    started = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", json=member, headers={**FHIR, **as_nurse})
    assert 202 == started.status_code, started.text
    runs.append(appeal_workflow_id(denial))
    assert "72 hours" in started.json()["issue"][0]["diagnostics"]
    again = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", headers=as_submitter)
    assert (409, "conflict") == _issue(again)[:2]

    # An approval has nothing to appeal.
    approved = make_pas_request(store)
    answer = await http.post("/fhir/Claim/$submit", json=approved.bundle, headers={**FHIR, **as_submitter})
    record = SubmissionStore(store.db).latest(approved.claim_id)
    runs.append(record.workflow_id)
    result = await client.get_workflow_handle_for(PriorAuthWorkflow.run, record.workflow_id).result()
    assert "approve" == result.determination, answer.text
    approval_id = result.claim_response.removeprefix("ClaimResponse/")
    not_adverse = await http.post(f"/fhir/ClaimResponse/{approval_id}/$appeal", headers=as_submitter)
    assert (422, "business-rule") == _issue(not_adverse)[:2] and "nothing to appeal" in _issue(not_adverse)[2]


async def test_an_expedited_member_appeal_is_reviewed_in_the_expedited_queue(
        http: httpx.AsyncClient, client: Client, store, approvers, runs) -> None:  # noqa: ANN001
    """Plan staff file the member's fast appeal: its item is in the expedited MD queue, due within 72 hours."""
    request, denial, _ = await _denied(http, client, store, approvers, runs)
    filed = datetime.now(UTC)
    member = {"resourceType": "Parameters", "parameter": [
        {"name": "requester", "valueReference": {"reference": f"Patient/{request.member_id}"}},
        {"name": "expedited", "valueBoolean": True}]}
    started = await http.post(f"/fhir/ClaimResponse/{denial}/$appeal", json=member,
                              headers={**FHIR, **auth(approvers["rn.kim"])})
    assert 202 == started.status_code, started.text
    runs.append(appeal_workflow_id(denial))
    item = await pending(client.get_workflow_handle_for(PriorAuthWorkflow.run, appeal_workflow_id(denial)))
    assert ("um-medical-review-expedited", "urgent", "md") == (item.queue, item.priority, item.required_role)
    assert timedelta(hours=71) < item.decide_by - filed <= timedelta(hours=72, minutes=1)
