"""Da Vinci PAS ``Claim/$submit`` and ``Claim/$inquire`` driven by a FHIR client (fhirpy) over a real socket, with
the real worker, Temporal dev server and records store: decided within the call, pended for an MD then issued,
the same request twice, and each refusal as an OperationOutcome with nothing stored or started."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, OperationOutcome, ResourceNotFound
from temporalio.client import Client
from temporalio.service import RPCError

from api import routes_fhir_pas
from store.access_log import AccessLog
from store.fhir_validation import validate_resource
from store.submissions import SubmissionStore
from tests.api.conftest import auth
from tests.deciding import decide
from tests.pas_factory import MRI_NOTES_AGAINST, make_pas_request
from tests.prior_auth_runs import decision, pending
from tools.determination import REVIEW_ACTION_EXTENSION
from tools.member import salted_digest
from tools.pas_request import scoped_id
from tools.determination import pre_auth_ref
from tools.pas_response import REVIEW_ACTION_COMPLEX_EXTENSION, determination_key
from workflows.prior_auth import PriorAuthWorkflow

SUBMITTER = "cc.jones"


@pytest.fixture
def http(worker_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API with a worker on its task queue (tests/api/conftest.py)."""
    return worker_http


@pytest.fixture
def fhir(http: httpx.AsyncClient, api_url: str, approvers: dict[str, str]) -> AsyncFHIRClient:
    """A FHIR client of the API's /fhir base, signed in as the submitting provider's system."""
    return AsyncFHIRClient(f"{api_url}/fhir", authorization=f"Bearer {approvers[SUBMITTER]}")


@pytest_asyncio.fixture
async def runs(client: Client, store) -> AsyncIterator[list[str]]:  # noqa: ANN001
    """Claim ids whose runs the test started; runs still open at the end are terminated."""
    claims: list[str] = []
    yield claims
    for claim_id in claims:
        record = SubmissionStore(store.db).latest(claim_id)
        if record is not None and record.workflow_id:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(record.workflow_id).terminate("test finished")


def _valid(bundle: dict[str, Any]) -> dict[str, Any]:
    """The response Bundle's ClaimResponse, once the Bundle and every entry validate as FHIR R4 (R4B models)."""
    bundle = json.loads(json.dumps(bundle))  # fhirpy's AttrDict as plain JSON
    validate_resource(bundle)
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])
        assert entry["fullUrl"].endswith(f"/fhir/{entry['resource']['resourceType']}/{entry['resource']['id']}")
    assert ("collection", "ClaimResponse") == (bundle["type"], bundle["entry"][0]["resource"]["resourceType"])
    return bundle["entry"][0]["resource"]


def _types(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["resourceType"] for e in bundle["entry"]]


def _review_actions(response: dict[str, Any]) -> set[str]:
    """Every X12 306 review action code on the lines, from either PAS extension."""
    codes = set()
    for item in response["item"]:
        for adjudication in item["adjudication"]:
            for extension in adjudication.get("extension") or []:
                if extension["url"] == REVIEW_ACTION_EXTENSION:
                    codes.add(extension["valueCodeableConcept"]["coding"][0]["code"])
                if extension["url"] == REVIEW_ACTION_COMPLEX_EXTENSION:
                    code = next(e for e in extension["extension"] if e["url"] == "code")
                    codes.add(code["valueCodeableConcept"]["coding"][0]["code"])
    return codes


def _outcome(error: OperationOutcome) -> tuple[str, str, str]:
    """The (issue code, careloom refusal code, diagnostics) of the OperationOutcome fhirpy raised."""
    resource = validate_resource(json.loads(json.dumps(error.resource)))
    issue = resource["issue"][0]
    refusal = (issue.get("details") or {}).get("coding", [{}])[0].get("code", "")
    return issue["code"], refusal, issue["diagnostics"]


def _inquiry(request, *, patient_id: str | None = None, claim_id: str | None = None,  # noqa: ANN001
             by_identifier: bool = False) -> dict[str, Any]:
    """A PAS inquiry Bundle: the Claim's id (or, ``by_identifier``, only its identifier) and patient, as the
    provider's system keeps them."""
    claim = copy.deepcopy(request.bundle["entry"][0]["resource"])
    claim.update(id=claim_id or request.claim_id, patient={"reference": f"Patient/{patient_id or request.member_id}"})
    full_url = f"http://provider.example/fhir/Claim/{claim['id']}"
    if by_identifier:
        del claim["id"]
        full_url = "urn:uuid:6f1c9d0e-8a7b-4c3d-9e2f-1a2b3c4d5e6f"
    return {"resourceType": "Bundle", "type": "collection", "identifier": {"system": "urn:example:inquiry",
                                                                          "value": request.claim_id},
            "entry": [{"fullUrl": full_url, "resource": claim}]}


def _parameters(bundle: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bundle}]}


async def _run_id(client: Client, store, claim_id: str) -> tuple[str, str]:  # noqa: ANN001
    record = SubmissionStore(store.db).latest(claim_id)
    return record.workflow_id, (await client.get_workflow_handle(record.workflow_id).describe()).run_id


async def _nothing_stored_or_started(client: Client, store, settings, request) -> None:  # noqa: ANN001
    """No Claim, note, submission record or run for the refused request."""
    assert (None, None) == (store.get("Claim", request.claim_id), SubmissionStore(store.db).latest(request.claim_id))
    assert [None] * len(request.note_ids) == [store.get("DocumentReference", scoped_id(request.claim_id, n))
                                              for n in request.note_ids]
    salt = settings.pseudonym_salt.get_secret_value()
    workflow_id = f"prior-auth-{salted_digest(f'{request.provider_id}/{request.claim_id}', salt)[:16]}"
    with pytest.raises(RPCError):
        await client.get_workflow_handle(workflow_id).describe()


async def test_a_request_meeting_every_criterion_is_decided_within_the_call(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, runs, approvers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """$submit answers the approving ClaimResponse the run wrote (A1, its preAuthRef); the same request again
    answers the same ClaimResponse from the same run; $inquire (Parameters-wrapped) answers it too."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 60.0)  # a loaded machine: the run may take a while
    request = make_pas_request(store)
    runs.append(request.claim_id)

    first = await fhir.execute("Claim/$submit", method="post", data=request.bundle)
    response = _valid(first)
    workflow_id, run_id = await _run_id(client, store, request.claim_id)
    assert ("complete", {"A1"}, f"Claim/{request.claim_id}") == (
        response["outcome"], _review_actions(response), response["request"]["reference"])
    assert pre_auth_ref(determination_key(workflow_id, run_id, "d1-determination")) == response["preAuthRef"]
    assert store.get("ClaimResponse", response["id"]) == response  # as the run wrote it
    assert {"Patient", "Practitioner", "Claim"} <= set(_types(first))
    assert request.bundle["identifier"] == first["identifier"]

    again = await fhir.execute("Claim/$submit", method="post", data=_parameters(request.bundle))
    raw = await http.post("/fhir/Claim/$inquire", json=_parameters(_inquiry(request)),
                          headers=auth(approvers[SUBMITTER]))
    assert response == _valid(again) == _valid(raw.json())
    assert (200, "application/fhir+json") == (raw.status_code, raw.headers["content-type"])
    assert (workflow_id, run_id) == await _run_id(client, store, request.claim_id)
    outcomes = [e.outcome for e in AccessLog(store.db).entries(workflow_id=workflow_id)
                if e.action == "prior_auth.submit"]
    assert ["started", "duplicate"] == outcomes


async def test_a_request_answered_before_the_run_decides_is_pended_with_the_preauthref_it_gets(
        fhir: AsyncFHIRClient, client: Client, store, runs, monkeypatch: pytest.MonkeyPatch) -> None:
    """No time to wait: a pended ClaimResponse (queued, A4, a preAuthRef); the approval the run then writes
    carries that same preAuthRef, and $inquire by the Claim's identifier alone answers it."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.0)
    request = make_pas_request(store)
    trace = {"system": "http://provider.example/PATIENT_EVENT_TRACE_NUMBER", "value": f"trace-{request.claim_id}"}
    request.bundle["entry"][0]["resource"]["identifier"] = [trace]
    runs.append(request.claim_id)

    pended = _valid(await fhir.execute("Claim/$submit", method="post", data=request.bundle))
    assert ("queued", {"A4"}) == (pended["outcome"], _review_actions(pended))
    workflow_id, _ = await _run_id(client, store, request.claim_id)
    result = await client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id).result()
    issued = _valid(await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request, by_identifier=True)))

    assert [trace] == pended["identifier"]  # the provider's trace number, echoed
    assert ("approve", f"ClaimResponse/{issued['id']}") == (result.determination, result.claim_response)
    assert ("complete", pended["preAuthRef"]) == (issued["outcome"], issued["preAuthRef"])


async def test_a_denial_waits_for_an_md_pended_then_inquire_answers_the_issued_response(
        fhir: AsyncFHIRClient, client: Client, store, runs) -> None:
    """Notes against the criteria: $submit answers at once, pended (A4 on every line, a preAuthRef, due time);
    $inquire answers the same until the MD and a second reviewer decide, then the denial as issued (A3)."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    runs.append(request.claim_id)

    submitted = await fhir.execute("Claim/$submit", method="post", data=request.bundle)
    pended = _valid(submitted)
    workflow_id, run_id = await _run_id(client, store, request.claim_id)
    assert ("queued", {"A4"}, pre_auth_ref(determination_key(workflow_id, run_id, "d1-determination"))) == (
        pended["outcome"], _review_actions(pended), pended["preAuthRef"])
    assert "due by" in pended["processNote"][0]["text"]
    assert store.get("ClaimResponse", pended["id"]) is None  # an answer, not a record: nothing is decided
    assert pended == _valid(await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request)))

    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    item = await pending(handle)
    assert "deny" == item.arguments.outcome
    await decide(client, workflow_id, decision(item, approver="dr.rivera", role="md"))
    await decide(client, workflow_id, decision(await pending(handle, required_role="rn"), approver="rn.kim",
                                               role="rn"))
    result = await handle.result()
    issued = _valid(await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request)))

    assert ("deny", f"ClaimResponse/{issued['id']}") == (result.determination, result.claim_response)
    assert ("complete", {"A3"}) == (issued["outcome"], _review_actions(issued))
    assert store.get("ClaimResponse", issued["id"]) == issued


async def test_a_changed_resubmission_is_409_and_the_request_and_its_run_are_unchanged(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, runs, approvers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The same Claim id with another note: a 409 OperationOutcome (conflict) naming the fix; nothing rewritten."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.0)
    request = make_pas_request(store)
    runs.append(request.claim_id)
    await fhir.execute("Claim/$submit", method="post", data=request.bundle)
    before = SubmissionStore(store.db).latest(request.claim_id)
    run_before = await _run_id(client, store, request.claim_id)
    changed = copy.deepcopy(request.bundle)
    changed["entry"][0]["resource"]["item"][0]["quantity"] = {"value": 3}

    with pytest.raises(OperationOutcome) as refused:
        await fhir.execute("Claim/$submit", method="post", data=changed)
    raw = await http.post("/fhir/Claim/$submit", json=changed, headers=auth(approvers[SUBMITTER]))

    issue, code, diagnostics = _outcome(refused.value)
    assert ("conflict", "conflict", 409) == (issue, code, raw.status_code)
    assert "new Claim id" in diagnostics
    assert (before, run_before) == (SubmissionStore(store.db).latest(request.claim_id),
                                    await _run_id(client, store, request.claim_id))


async def test_bad_bodies_are_400_and_422_operation_outcomes_and_nothing_is_stored_or_started(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, settings, approvers) -> None:
    """Not JSON or not a Bundle: 400; a Claim for payment: 422 naming use 'preauthorization'; nothing kept."""
    headers = {**auth(approvers[SUBMITTER]), "Content-Type": "application/fhir+json"}
    not_json = await http.post("/fhir/Claim/$submit", content=b"{not json", headers=headers)
    payment = make_pas_request(store, claim_use="claim")
    patient = payment.bundle["entry"][1]["resource"]

    with pytest.raises(OperationOutcome) as not_a_bundle:
        await fhir.execute("Claim/$submit", method="post", data=patient)
    with pytest.raises(OperationOutcome) as empty_parameters:
        await fhir.execute("Claim/$submit", method="post", data={"resourceType": "Parameters", "parameter": []})
    with pytest.raises(OperationOutcome) as not_prior_auth:
        await fhir.execute("Claim/$submit", method="post", data=payment.bundle)
    statuses = [(await http.post("/fhir/Claim/$submit", json=body, headers=headers)).status_code
                for body in (patient, payment.bundle)]

    assert (400, "application/fhir+json") == (not_json.status_code, not_json.headers["content-type"])
    assert ("structure", "not_a_bundle") == _outcome(OperationOutcome(resource=not_json.json()))[:2]
    assert "not JSON" in not_json.json()["issue"][0]["diagnostics"]
    assert ("structure", "not_a_bundle") == _outcome(not_a_bundle.value)[:2]
    assert "'resource'" in _outcome(empty_parameters.value)[2]
    issue, code, diagnostics = _outcome(not_prior_auth.value)
    assert ("not-supported", "not_prior_auth") == (issue, code) and "'preauthorization'" in diagnostics
    assert [400, 422] == statuses
    await _nothing_stored_or_started(client, store, settings, payment)


async def test_a_note_too_large_is_413_and_nothing_is_stored_or_started(
        fhir: AsyncFHIRClient, http: httpx.AsyncClient, client: Client, store, settings, approvers) -> None:
    """A 700,000-byte note: a 413 OperationOutcome (too-long) naming CARELOOM_PA_MAX_NOTE_BYTES."""
    request = make_pas_request(store, notes=(("Lumbar radiculopathy. " * 31_819)[:700_000],))
    with pytest.raises(OperationOutcome) as refused:
        await fhir.execute("Claim/$submit", method="post", data=request.bundle)
    raw = await http.post("/fhir/Claim/$submit", json=request.bundle, headers=auth(approvers[SUBMITTER]))

    issue, code, diagnostics = _outcome(refused.value)
    assert ("too-long", "note_too_large", 413) == (issue, code, raw.status_code)
    assert "CARELOOM_PA_MAX_NOTE_BYTES" in diagnostics
    await _nothing_stored_or_started(client, store, settings, request)


async def test_an_unauthenticated_caller_is_401_before_the_body_is_read(
        api_url: str, http: httpx.AsyncClient, client: Client, store, settings) -> None:
    """No token, a valid request or a body that is not JSON: 401 OperationOutcome (login); nothing stored."""
    request = make_pas_request(store)
    with pytest.raises(AuthorizationError):
        await AsyncFHIRClient(f"{api_url}/fhir").execute("Claim/$submit", method="post", data=request.bundle)
    answers = [await http.post(f"/fhir/Claim/{operation}", content=body, headers={"Content-Type": "application/json"})
               for operation in ("$submit", "$inquire") for body in (json.dumps(request.bundle).encode(), b"{no")]

    assert [401] * 4 == [a.status_code for a in answers]
    assert all(validate_resource(a.json())["issue"][0]["code"] == "login" for a in answers)
    assert "Bearer" == answers[0].headers["www-authenticate"]
    await _nothing_stored_or_started(client, store, settings, request)


async def test_inquire_about_an_unknown_or_someone_elses_request_is_404(
        fhir: AsyncFHIRClient, api_url: str, http: httpx.AsyncClient, store, runs, approvers,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown Claim id, another patient, or another caller than the submitter: the same 404 OperationOutcome;
    an inquiry Claim that is not a preauthorization is 422."""
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.0)
    request = make_pas_request(store)
    runs.append(request.claim_id)
    await fhir.execute("Claim/$submit", method="post", data=request.bundle)
    other = AsyncFHIRClient(f"{api_url}/fhir", authorization=f"Bearer {approvers['rn.ortiz']}")

    answers = []
    for who, body in ((fhir, _inquiry(request, claim_id="claim-never-sent")),
                      (fhir, _inquiry(request, patient_id=make_pas_request(store).member_id)),
                      (other, _inquiry(request))):
        with pytest.raises(ResourceNotFound) as missing:
            await who.execute("Claim/$inquire", method="post", data=body)
        answers.append(validate_resource(json.loads(str(missing.value)))["issue"][0]["diagnostics"])
    payment = _inquiry(request)
    payment["entry"][0]["resource"]["use"] = "claim"
    raw = await http.post("/fhir/Claim/$inquire", json=payment, headers=auth(approvers[SUBMITTER]))

    assert 1 == len(set(answers)) and "that you submitted" in answers[0]
    assert (422, "not-supported") == (raw.status_code, raw.json()["issue"][0]["code"])
    shown = await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request))
    assert f"Claim/{request.claim_id}" == _valid(shown)["request"]["reference"]
