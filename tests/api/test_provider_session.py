"""The provider side of a prior authorization, end to end against the real API, worker and Temporal dev server (the
issue's "done means"): subscribe a real HTTP receiver, the CRD order-sign card for the MRI order, the DTR
package pre-filled from the plan's records, PAS ``$submit`` answered pended (A4), the MD approves the pend (the
receiver is told), the provider completes the package's response and posts it, the run approves on its own (the
receiver is told again) and ``$inquire`` answers the approval (A1, preAuthRef)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.parameters import Parameters
from fhirpy import AsyncFHIRClient
from temporalio.client import Client

from api import routes_fhir_pas
from store.fhir_validation import validate_resource
from store.submissions import SubmissionStore
from tests.api.test_cds_dtr_api import SIGN, _hook, _info, _order, _resource
from tests.api.test_fhir_pas import _inquiry, _review_actions, _valid, runs  # noqa: F401 - runs is a fixture
from tests.api.test_pas_subscriptions import (  # noqa: F401 - subscribed is a fixture
    Receiver,
    _status_of,
    _subscribe,
    _wait,
    receiving,
    subscribed,
)
from tests.conftest import wait_for_status
from tests.deciding import decide
from tests.fhir_factory import make_member
from tests.pas_factory import MRI_NOTES_MISSING_THERAPY, make_pas_request
from tests.prior_auth_runs import decision, pending
from tools.qr_answers import QR_CONTEXT
from workflows.prior_auth import PriorAuthWorkflow

SUBMITTER = "cc.jones"
RUN_TIMEOUT = 30.0
"""How long a run may take to decide after the answer (a regression fails here instead of hanging)."""
THERAPY = "conservative-therapy-6-weeks"
MRI = "72148"


@pytest.fixture
def http(worker_http: httpx.AsyncClient, approvers: dict[str, str]) -> httpx.AsyncClient:
    """The API with a worker on its task queue, signed in as the submitting provider's system."""
    worker_http.headers["Authorization"] = f"Bearer {approvers[SUBMITTER]}"
    return worker_http


@pytest.fixture
def fhir(http: httpx.AsyncClient, api_url: str, approvers: dict[str, str]) -> AsyncFHIRClient:
    return AsyncFHIRClient(f"{api_url}/fhir", authorization=f"Bearer {approvers[SUBMITTER]}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


def _plain(resource: Any) -> dict[str, Any]:  # noqa: ANN401 - fhirpy's AttrDict
    return json.loads(json.dumps(resource))


def _focus(bundle: dict[str, Any]) -> str:
    """The ClaimResponse a notification Bundle names (R4 backport subscription status, validated)."""
    validate_resource(bundle)
    event = {p["name"]: p for p in _status_of(bundle)["notification-event"]["part"]}
    return event["focus"]["valueReference"]["reference"]


def _completed(prefilled: dict[str, Any], claim_id: str) -> dict[str, Any]:
    """The package's pre-filled response as the provider completes it: attested by a Practitioner, naming the
    request, the therapy criterion the records did not document answered yes with where it is documented."""
    response = copy.deepcopy(prefilled)
    response.update(status="completed", author={"reference": "Practitioner/pr-ordering"},
                    extension=[{"url": QR_CONTEXT, "valueReference": {"reference": f"Claim/{claim_id}"}}])
    response["item"] += [
        {"linkId": THERAPY, "answer": [{"valueBoolean": True}]},
        {"linkId": f"{THERAPY}.evidence", "answer": [{"valueString": "PT 2x weekly 2026-01-05 to 2026-02-20."}]}]
    return response


async def test_a_provider_session_from_the_order_to_the_approval(
        http: httpx.AsyncClient, fhir: AsyncFHIRClient, client: Client, store, runs, subscribed,  # noqa: ANN001, F811
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routes_fhir_pas, "DECISION_WAIT_SECONDS", 0.5)
    member = make_member(store)
    await _subscribe(http, receiver, subscribed)

    # CRD: signing the MRI order, the card says prior authorization is needed and links the DTR questionnaire.
    order = _order(member, MRI)
    card = await http.post(SIGN, json=_hook(member, order))
    assert 200 == card.status_code, card.text
    [action] = card.json()["systemActions"]
    info = _info(validate_resource(action["resource"]))
    assert ("auth-needed", {"reference": f"Coverage/{_resource(member, 'Coverage')['id']}"}) == (
        info["pa-needed"], info["coverage"])
    assert info["questionnaire"].rpartition("|")[0] == card.json()["cards"][0]["links"][0]["url"]

    # DTR: the package for the order, its response pre-filled from the records (therapy left for the provider).
    output = _plain(await fhir.execute("Questionnaire/$questionnaire-package", method="post", data={
        "resourceType": "Parameters", "parameter": [{"name": "coverage", "resource": _resource(member, "Coverage")},
                                                    {"name": "order", "resource": order}]}))
    Parameters.model_validate(output)
    [package] = [p["resource"] for p in output["parameter"] if p["name"] == "PackageBundle"]
    questionnaire, prefilled = (validate_resource(e["resource"]) for e in package["entry"])
    assert info["questionnaire"] == f"{questionnaire['url']}|{questionnaire['version']}" == prefilled["questionnaire"]
    assert ("in-progress", f"Patient/{member.member_id}") == (prefilled["status"], prefilled["subject"]["reference"])
    assert THERAPY not in {i["linkId"] for i in prefilled["item"]}

    # PAS: the request, its notes silent on the therapy, is answered pended while an MD looks at the pend.
    request = make_pas_request(store, member=member, notes=MRI_NOTES_MISSING_THERAPY)
    runs.append(request.claim_id)
    pended = _valid(await fhir.execute("Claim/$submit", method="post", data=request.bundle))
    assert ("queued", {"A4"}) == (pended["outcome"], _review_actions(pended))
    workflow_id = SubmissionStore(store.db).latest(request.claim_id).workflow_id
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    item = await pending(handle)
    assert ("pend", [THERAPY]) == (item.arguments.outcome, item.arguments.requested_documentation)
    await decide(client, workflow_id, decision(item, approver="md.lee", role="md"))

    # The receiver is told of the pend as issued; $inquire answers it while the run waits for the documentation.
    await _wait(lambda: receiver.events())
    pend_response = _focus(receiver.events()[0])
    waiting = await wait_for_status(handle, lambda s: s.status == "awaiting_documentation",
                                    query=PriorAuthWorkflow.status)
    issued_pend = store.get(*pend_response.split("/"))
    assert ("queued", f"Claim/{request.claim_id}") == (issued_pend["outcome"], issued_pend["request"]["reference"])
    assert issued_pend == _valid(await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request)))
    assert waiting.documentation_due is not None

    # The provider completes the package's response and sends it: stored, and the run reviews again.
    answer = await http.post("/fhir/QuestionnaireResponse", json=_completed(prefilled, request.claim_id),
                             headers={"Content-Type": "application/fhir+json"})
    assert 201 == answer.status_code, answer.text
    stored = validate_resource(answer.json())
    assert (f"QuestionnaireResponse/{stored['id']}", stored) == (
        answer.headers["location"], store.get("QuestionnaireResponse", stored["id"]))

    result = await asyncio.wait_for(handle.result(), timeout=RUN_TIMEOUT)
    await _wait(lambda: len(receiver.events()) >= 2)
    issued = _valid(await fhir.execute("Claim/$inquire", method="post", data=_inquiry(request)))
    assert ("approve", None, [stored["id"]]) == (result.determination, result.decided_by, result.documentation)
    assert [pend_response, result.claim_response] == [_focus(b) for b in receiver.events()]
    assert f"ClaimResponse/{issued['id']}" == result.claim_response != pend_response
    assert ("complete", {"A1"}) == (issued["outcome"], _review_actions(issued))
    assert issued["preAuthRef"].startswith("PA-")
    assert issued == receiver.events()[1]["entry"][1]["resource"]  # full-resource: the approval as issued
