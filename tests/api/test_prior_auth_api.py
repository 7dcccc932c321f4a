"""POST /api/prior-auth over a real socket: intake, idempotency, refusals, and the item in the inbox API."""

from __future__ import annotations


import httpx
import pytest

from tests.api.conftest import auth, sign_in
from tests.conftest import wait_for_status
from tests.pas_factory import MRI_NOTES_AGAINST, make_pas_request
from workflows.prior_auth import PriorAuthWorkflow


@pytest.fixture
def http(worker_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API with a worker on its task queue (tests/api/conftest.py)."""
    return worker_http


async def test_a_request_is_accepted_once_and_triaged(http: httpx.AsyncClient, client, store,
                                                      approvers: dict[str, str]) -> None:
    """201 and a run for a new request; the same request again is 200 with the same run; the run approves."""
    request = make_pas_request(store)
    first = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["cc.jones"]))
    again = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["cc.jones"]))

    assert (201, 200) == (first.status_code, again.status_code)
    assert (True, False, first.json()["workflow_id"]) == (first.json()["started"], again.json()["started"],
                                                         again.json()["workflow_id"])
    result = await client.get_workflow_handle_for(PriorAuthWorkflow.run, first.json()["workflow_id"]).result()
    assert ("completed", "approve") == (result.status, result.determination)
    shown = await http.get(f"/api/prior-auth/{first.json()['workflow_id']}", headers=auth(approvers["cc.jones"]))
    assert ("completed", "approve") == (shown.json()["status"], shown.json()["determination"])


async def test_a_bundle_that_is_not_a_prior_auth_request_is_422_and_writes_nothing(
        http: httpx.AsyncClient, store, approvers: dict[str, str]) -> None:
    """A Claim with use=claim is refused with its code and the fix; the Claim is not stored."""
    request = make_pas_request(store, claim_use="claim")
    refused = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["cc.jones"]))
    assert 422 == refused.status_code
    assert "not_prior_auth" == refused.json()["detail"]["code"]
    assert "preauthorization" in refused.json()["detail"]["message"]
    assert store.get("Claim", request.claim_id) is None


async def test_intake_needs_a_signed_in_caller(http: httpx.AsyncClient, store) -> None:
    """Without a token the request is 401 and nothing is stored."""
    request = make_pas_request(store)
    assert 401 == (await http.post("/api/prior-auth", json=request.bundle)).status_code
    assert store.get("Claim", request.claim_id) is None


async def test_a_denial_recommendation_is_in_the_inbox_with_its_claim_response_preview(
        http: httpx.AsyncClient, client, store, approvers: dict[str, str]) -> None:
    """The MD sees the recommended denial, its criteria and the ClaimResponse it would write; the submitter
    may not decide it."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    accepted = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["care-ops-bot"]))
    workflow_id = accepted.json()["workflow_id"]
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    try:
        status = await wait_for_status(handle, lambda s: bool(s.pending_approvals), query=PriorAuthWorkflow.status)
        item = status.pending_approvals[0]
        listed = await http.get("/api/approvals", params={"role": "md"}, headers=auth(approvers["md.lee"]))
        assert item.approval_id in [i["approval_id"] for i in listed.json()["items"] if i["workflow_id"] == workflow_id]
        shown = (await http.get(f"/api/approvals/{workflow_id}/{item.approval_id}", headers=auth(approvers["md.lee"]))).json()
        assert ("ClaimResponse", "complete") == (shown["preview"][0]["resourceType"], shown["preview"][0]["outcome"])
        context = shown["item"]["context"]
        assert ("prior_auth", "deny") == (context["kind"], shown["item"]["arguments"]["outcome"])
        assert any(c["status"] == "not_met" and c["contrary"] for c in context["criteria"])
        async with httpx.AsyncClient(base_url=str(http.base_url)) as browser_like:
            await sign_in(browser_like, approvers["md.lee"])
            page = await browser_like.get(f"/inbox/{workflow_id}/{item.approval_id}")
        assert 200 == page.status_code and "Criteria and cited evidence" in page.text and "NOT met" in page.text
        own, made_up = [await http.post(f"/api/approvals/{workflow_id}/{approval_id}/decision",
                                        json={"decision": "approve", "digest": item.digest},
                                        headers=auth(approvers["care-ops-bot"]))
                        for approval_id in (item.approval_id, "no-such-item")]
        # The submitter is refused on the whole run, before the item is looked up: 403 for the MD item above
        # their role and for an id that does not exist alike, so the answer confirms no item.
        assert (403, 403, "forbidden") == (own.status_code, made_up.status_code, own.json()["code"])
        assert own.json()["detail"].startswith(f"you submitted this request ({workflow_id})")
    finally:
        await handle.terminate("test finished")
