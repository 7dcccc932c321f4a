"""``POST /fhir/QuestionnaireResponse`` over a real socket, with the real worker, Temporal dev server and records
store: a provider answers a pended request with the completed DTR questionnaire (201, stored once, the run approves
on its own and ``$inquire`` answers the approval); every refusal is an OperationOutcome with the status a FHIR
server uses, nothing stored and the run unchanged; the same answer twice is taken once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fhirpy import AsyncFHIRClient
from temporalio.client import Client, WorkflowHandle

from api import routes_fhir_pas
from store.fhir_validation import validate_resource
from store.submissions import SubmissionStore
from tests.api.conftest import auth
from tests.api.test_fhir_pas import _inquiry, _review_actions, _valid, fhir, http, runs  # noqa: F401 - fixtures
from tests.conftest import wait_for_status
from tests.deciding import decide
from tests.dtr_answers import completed_response
from tests.fhir_factory import make_member
from tests.pas_factory import MRI_NOTES_MISSING_THERAPY, PasRequest, make_pas_request
from tests.prior_auth_runs import decision, pending
from tools.pas_diff import SUBMITTED_ID_SYSTEM
from tools.qr_answers import QR_CONTEXT
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthResult, PriorAuthStatus

SUBMITTER = "cc.jones"
RUN_TIMEOUT = 30.0
"""How long a run may take to decide after the answer (a regression fails here instead of hanging)."""
THERAPY = "conservative-therapy-6-weeks"
ANSWER = "/fhir/QuestionnaireResponse"


def _stored_answers(store) -> int:  # noqa: ANN001
    """How many QuestionnaireResponses the records store holds."""
    return store.db.read(lambda r: r.one(
        "SELECT COUNT(*) FROM resources WHERE resource_type = 'QuestionnaireResponse'"))[0]


async def _submitted(fhir: AsyncFHIRClient, client: Client, store, runs: list[str]  # noqa: ANN001, F811
                     ) -> tuple[PasRequest, WorkflowHandle]:
    """A request whose notes leave the therapy criterion undocumented, submitted with $submit: answered pended (A4)
    and parked for an MD on a pend recommendation naming that criterion."""
    request = make_pas_request(store, notes=MRI_NOTES_MISSING_THERAPY)
    runs.append(request.claim_id)
    pended = _valid(await fhir.execute("Claim/$submit", method="post", data=request.bundle))
    assert ("queued", {"A4"}) == (pended["outcome"], _review_actions(pended))
    workflow_id = SubmissionStore(store.db).latest(request.claim_id).workflow_id
    return request, client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)


async def _awaiting_documentation(fhir: AsyncFHIRClient, client: Client, store, runs: list[str]  # noqa: ANN001, F811
                                  ) -> tuple[PasRequest, WorkflowHandle, PriorAuthStatus]:
    """A submitted request whose pend an MD approved: its run waits for the provider's documentation."""
    request, handle = await _submitted(fhir, client, store, runs)
    item = await pending(handle)
    assert ("pend", [THERAPY]) == (item.arguments.outcome, item.arguments.requested_documentation)
    await decide(client, handle.id, decision(item, approver="md.lee", role="md"))
    waiting = await wait_for_status(handle, lambda s: s.status == "awaiting_documentation",
                                    query=PriorAuthWorkflow.status)
    assert waiting.documentation_due is not None and 0 == waiting.round
    return request, handle, waiting


async def _post(http: httpx.AsyncClient, body: Any, token: str | None) -> httpx.Response:  # noqa: ANN401, F811
    """POST a response (a JSON value, or raw bytes) as the provider's system sends it."""
    headers = {"Content-Type": "application/fhir+json", **(auth(token) if token else {})}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(ANSWER, content=content, headers=headers)


def _refusal(answer: httpx.Response) -> tuple[int, str, str]:
    """(HTTP status, issue code, diagnostics) of a refusal, once it is an R4 OperationOutcome served as FHIR JSON."""
    assert "application/fhir+json" == answer.headers["content-type"], answer.text
    outcome = validate_resource(answer.json())
    assert "OperationOutcome" == outcome["resourceType"]
    issue = outcome["issue"][0]
    return answer.status_code, issue["code"], issue["diagnostics"]


async def test_an_attested_answer_is_stored_and_the_request_is_then_approved(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, runs, approvers,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """201 with the stored response (R4, Location, the provider's id kept as an identifier); the run reviews again
    and approves on its own; $inquire answers the approving ClaimResponse, not the pend as issued."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    request, handle, waiting = await _awaiting_documentation(fhir, client, store, runs)
    pend_response = waiting.actions[-1].reference
    before = _stored_answers(store)
    sent = completed_response(request.claim_id, request.member_id, {THERAPY: True},
                              response_id=f"qr-{request.claim_id}")

    answer = await _post(http, sent, approvers[SUBMITTER])

    assert 201 == answer.status_code, answer.text
    stored = validate_resource(answer.json())
    assert f"QuestionnaireResponse/{stored['id']}" == answer.headers["location"]
    assert "application/fhir+json" == answer.headers["content-type"]
    assert store.get("QuestionnaireResponse", stored["id"]) == stored
    assert before + 1 == _stored_answers(store)
    assert {"system": SUBMITTED_ID_SYSTEM, "value": sent["id"]} == stored["identifier"]
    assert ({**sent, "id": stored["id"], "identifier": stored["identifier"]}
            == {k: v for k, v in stored.items() if k != "meta"})

    result: PriorAuthResult = await asyncio.wait_for(handle.result(), timeout=RUN_TIMEOUT)
    issued = _valid(await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request)))
    assert ("completed", "approve", None) == (result.status, result.determination, result.decided_by)
    assert [stored["id"]] == result.documentation
    assert ["r1-d1-determination"] == [a.action_id for a in result.actions]
    assert f"ClaimResponse/{issued['id']}" == result.claim_response != pend_response
    assert ("complete", {"A1"}, f"Claim/{request.claim_id}") == (
        issued["outcome"], _review_actions(issued), issued["request"]["reference"])
    assert issued["preAuthRef"].startswith("PA-")
    assert "queued" == store.get(*pend_response.split("/"))["outcome"]  # the pend as issued stays on record


async def test_each_refusal_is_an_operation_outcome_and_leaves_the_waiting_run_unchanged(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, api_url: str, client: Client, store, runs,  # noqa: F811
        approvers, monkeypatch: pytest.MonkeyPatch) -> None:
    """400 not JSON / not a QuestionnaireResponse / no qr-context; 404 another caller or an unknown Claim (the same
    answer: ids are never confirmed); 422 an old questionnaire version, another member, in progress; 401 without a
    token. Nothing is stored and the run still waits for the same documentation, in round 0."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    request, handle, waiting = await _awaiting_documentation(fhir, client, store, runs)
    before = _stored_answers(store)

    def answer(**changes: Any) -> dict[str, Any]:  # noqa: ANN401
        sent = completed_response(request.claim_id, request.member_id, {THERAPY: True},
                                  response_id=f"qr-refused-{request.claim_id}")
        return {**sent, **changes}

    url, _, _ = answer()["questionnaire"].partition("|")
    token, other = approvers[SUBMITTER], approvers["rn.kim"]
    cases: list[tuple[str, Any, str | None, int, str, str]] = [
        ("not JSON", b"{not json", token, 400, "structure", "not JSON"),
        ("not a QuestionnaireResponse", {"resourceType": "Patient", "id": request.member_id}, token,
         400, "structure", "not a FHIR QuestionnaireResponse"),
        ("no qr-context", answer(extension=[]), token, 400, "required", QR_CONTEXT),
        ("another caller", answer(), other, 404, "not-found", "that you submitted"),
        ("an unknown Claim", completed_response("claim-never-sent", request.member_id, {THERAPY: True}), token,
         404, "not-found", "that you submitted"),
        ("an old questionnaire version", answer(questionnaire=f"{url}|2019-01-01"), token,
         422, "not-supported", "$questionnaire-package"),
        ("another member", answer(subject={"reference": f"Patient/{make_member(store).member_id}"}), token,
         422, "invalid", "another member"),
        ("in progress", answer(status="in-progress"), token, 422, "business-rule", "'in-progress'"),
        ("no token", answer(), None, 401, "login", ""),
    ]
    refused = {name: _refusal(await _post(http, body, who)) for name, body, who, *_ in cases}

    assert {name: (status, code) for name, _, _, status, code, _ in cases} == {
        name: (status, code) for name, (status, code, _) in refused.items()}
    missing = [name for name, *_, words in cases if words not in refused[name][2]]
    assert [] == missing, {name: refused[name][2] for name in missing}
    assert refused["another caller"][2] == refused["an unknown Claim"][2]
    anonymous = await http.post(ANSWER, json=answer())
    assert (401, "Bearer") == (anonymous.status_code, anonymous.headers["www-authenticate"])
    assert before == _stored_answers(store)
    now = await handle.query(PriorAuthWorkflow.status)
    assert ("awaiting_documentation", waiting.documentation_due, 0, []) == (
        now.status, now.documentation_due, now.round, now.pending_approvals)


async def test_an_answer_before_the_md_decided_the_pend_is_409_and_nothing_is_stored(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, runs, approvers,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The run is parked for the MD's decision on the pend: it is not waiting for documentation yet."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    request, handle = await _submitted(fhir, client, store, runs)
    item = await pending(handle)
    parked = await handle.query(PriorAuthWorkflow.status)
    before = _stored_answers(store)

    answer = await _post(http, completed_response(request.claim_id, request.member_id, {THERAPY: True}),
                         approvers[SUBMITTER])

    status, code, diagnostics = _refusal(answer)
    assert (409, "conflict") == (status, code)
    assert "not waiting for documentation" in diagnostics and "$inquire" in diagnostics
    assert before == _stored_answers(store)
    now = await handle.query(PriorAuthWorkflow.status)
    assert (parked.status, None, 0, [item.approval_id]) == (
        now.status, now.documentation_due, now.round, [p.approval_id for p in now.pending_approvals])


async def test_the_same_answer_twice_is_taken_once(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, runs, approvers,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The second post is 409 (the request is under review or decided); the response stored by the first stays,
    once, and the run reviewed the request with one answer."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    request, handle, _ = await _awaiting_documentation(fhir, client, store, runs)
    before = _stored_answers(store)
    sent = completed_response(request.claim_id, request.member_id, {THERAPY: True},
                              response_id=f"qr-twice-{request.claim_id}")

    first = await _post(http, sent, approvers[SUBMITTER])
    second = await _post(http, sent, approvers[SUBMITTER])

    assert 201 == first.status_code, first.text
    status, code, diagnostics = _refusal(second)
    assert (409, "conflict") == (status, code)
    assert "not waiting for documentation" in diagnostics
    stored = first.json()
    assert (before + 1, stored) == (_stored_answers(store), store.get("QuestionnaireResponse", stored["id"]))
    result: PriorAuthResult = await asyncio.wait_for(handle.result(), timeout=RUN_TIMEOUT)
    assert ("approve", [stored["id"]]) == (result.determination, result.documentation)
    assert store.get("QuestionnaireResponse", stored["id"]) == stored
