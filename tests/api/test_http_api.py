"""The HTTP API over a real socket: authentication, status codes, decisions, bulk, OpenAPI."""

from __future__ import annotations

import asyncio

import httpx

from guardrails.configured import outreach_policy
from tests.api.conftest import auth
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.fhir_factory import HIGH_RISK, make_member
from tests.net import free_port


async def test_requests_without_a_valid_token_get_401(http: httpx.AsyncClient) -> None:
    """No token, a malformed header and a forged token are all 401 and name the problem."""
    missing = await http.get("/api/approvals")
    forged = await http.get("/api/approvals", headers=auth("clt_forged"))
    basic = await http.get("/api/approvals", headers={"Authorization": "Basic abc"})
    assert (401, 401, 401) == (missing.status_code, forged.status_code, basic.status_code)
    assert "bearer" in missing.json()["detail"].lower()


async def test_openapi_schema_lists_the_operations(http: httpx.AsyncClient) -> None:
    """The OpenAPI document describes the approval operations."""
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert {"/api/approvals", "/api/approvals/bulk", "/api/approvals/{workflow_id}/{approval_id}/decision"} <= set(paths)


async def test_decisions_map_refusals_to_status_codes(
    start_run: StartRun, store, http: httpx.AsyncClient, approvers: dict[str, str]
) -> None:
    """404 unknown or above the caller's role (ids are not confirmed), 403 self-approval, 422 invalid edit or missing reason, 409 stale digest,
    then 200 for the approval and 409 for a conflicting second decision."""
    # Every action waits for a human, so the run stays open while this test repeats its decision.
    handle = await start_run(make_member(store, **HIGH_RISK), initiated_by="care-ops-bot", policy=ALWAYS_ASK)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
    item = next(p for p in status.pending_approvals if p.tool == "draft_care_plan")
    url = f"/api/approvals/{handle.id}/{item.approval_id}"
    approve = {"decision": "approve", "digest": item.digest}

    shown = await http.get(url, headers=auth(approvers["rn.kim"]))
    assert 200 == shown.status_code
    assert "CarePlan" == shown.json()["preview"][0]["resourceType"]
    assert "(member)" == shown.json()["preview"][0]["subject"]["reference"].removeprefix("Patient/")

    cases = [
        (404, f"/api/approvals/{handle.id}/a9-nothing.1/decision", approve, "md.lee"),
        (404, "/api/approvals/outreach-nobody-nothing/a1.1/decision", approve, "md.lee"),
        (404, f"{url}/decision", approve, "cc.jones"),
        (403, f"{url}/decision", approve, "care-ops-bot"),
        (422, f"{url}/decision", {"decision": "reject", "digest": item.digest}, "rn.kim"),
        (422, f"{url}/decision", {"decision": "edit", "digest": item.digest, "arguments": {"tool": "draft_care_plan",
                                                                                         "title": "x"}}, "rn.kim"),
        (409, f"{url}/decision", {"decision": "approve", "digest": "0" * 64}, "rn.kim"),
    ]
    for expected, path, body, user in cases:
        response = await http.post(path, json=body, headers=auth(approvers[user]))
        assert expected == response.status_code, (path, body, user, response.text)

    ok = await http.post(f"{url}/decision", json=approve, headers=auth(approvers["rn.kim"]))
    assert (200, "approved", "rn.kim") == (ok.status_code, ok.json()["outcome"], ok.json()["approver"])
    again = await http.post(f"{url}/decision", json=approve, headers=auth(approvers["rn.kim"]))
    assert (200, ok.json()) == (again.status_code, again.json())
    conflict = await http.post(f"{url}/decision", json={"decision": "reject", "digest": item.digest,
                                                        "reason": "no"}, headers=auth(approvers["md.lee"]))
    assert 409 == conflict.status_code


async def test_bulk_endpoint_reports_every_item(
    start_run: StartRun, store, http: httpx.AsyncClient, approvers: dict[str, str]
) -> None:
    """A bulk approval of task items answers 200 with one result per item, failures included."""
    handles = [await start_run(make_member(store), policy=ALWAYS_ASK) for _ in range(2)]
    items = []
    for handle in handles:
        status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
        task = next(p for p in status.pending_approvals if p.tool == "create_task")
        items.append({"workflow_id": handle.id, "approval_id": task.approval_id, "digest": task.digest})
    items.append({"workflow_id": handles[0].id, "approval_id": "a9-none.1", "digest": "0" * 64})

    response = await http.post("/api/approvals/bulk", headers=auth(approvers["rn.kim"]),
                               json={"decision": "approve", "tool": "create_task", "items": items})

    body = response.json()
    assert (200, 2, 1) == (response.status_code, body["decided"], body["failed"])
    assert [True, True, False] == [r["ok"] for r in body["results"]]
    assert "not_found" == body["results"][2]["error_code"]


async def test_listing_filters_by_role_and_queue(
    start_run: StartRun, store, http: httpx.AsyncClient, approvers: dict[str, str]
) -> None:
    """GET /api/approvals filters by role and queue and returns items sorted by deadline."""
    handle = await start_run(make_member(store, **HIGH_RISK))
    await wait_for_status(handle, lambda s: len(s.pending_approvals) == 1)
    for _ in range(50):
        page = (await http.get("/api/approvals", params={"role": "rn", "queue": "clinical-review",
                                                          "page_size": 500},
                               headers=auth(approvers["rn.kim"]))).json()
        if any(i["workflow_id"] == handle.id for i in page["items"]):
            break
        await asyncio.sleep(0.3)  # visibility is eventually consistent
    assert any(i["workflow_id"] == handle.id for i in page["items"])
    assert {"clinical-review"} == {i["queue"] for i in page["items"]}
    deadlines = [i["sla_deadline"] for i in page["items"]]
    assert sorted(deadlines) == deadlines
    bad = await http.get("/api/approvals", params={"role": "janitor"}, headers=auth(approvers["rn.kim"]))
    assert 422 == bad.status_code


async def test_codec_endpoint_decodes_for_signed_in_users_only(settings, client, approvers) -> None:
    """The Web UI codec endpoint decrypts payloads for an authenticated user and refuses everyone else."""
    import base64

    from google.protobuf import json_format
    from pydantic import SecretStr
    from temporalio.api.common.v1 import Payload, Payloads

    from cli.demo import api_server
    from runtime.codec import PayloadEncryptionCodec, generate_key, parse_keys

    spec = f"k1={generate_key()}"
    served = settings.model_copy(update={"api_port": free_port(), "payload_keys": SecretStr(spec)})
    sealed = await PayloadEncryptionCodec(*parse_keys(spec)).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')])
    body = json_format.MessageToDict(Payloads(payloads=sealed))
    async with api_server(served, client) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.post("/codec/decode", json=body)
        decoded = await http.post("/codec/decode", json=body, headers=auth(approvers["rn.kim"]))
    assert 401 == refused.status_code
    assert 200 == decoded.status_code
    [payload] = decoded.json()["payloads"]
    assert b'"hello"' == base64.b64decode(payload["data"])


async def test_a_failed_run_says_failed_with_its_failure(client, task_queue: str, settings, http: httpx.AsyncClient,
                                                         approvers: dict[str, str]) -> None:
    """GET /api/runs/{id} of a run that FAILED (unknown member) answers status failed with MemberNotFound and its
    message, the status word the run last published and the follow-up Task a person got (it said
    ``needs_attention``, the last word, before)."""
    from temporalio.client import WorkflowFailureError

    from workflows.outreach_client import start_outreach

    handle, _ = await start_outreach(client, member_id="nobody-api-21", encounter_id="nothing-api-21",
                                     policy=outreach_policy(settings), task_queue=task_queue,
                                     salt=settings.pseudonym_salt.get_secret_value(), tool_attempts=1)
    try:
        await handle.result()
    except WorkflowFailureError:
        pass
    answer = await http.get(f"/api/runs/{handle.id}", headers=auth(approvers["md.lee"]))
    assert 200 == answer.status_code, answer.text
    body = answer.json()
    assert ("failed", "failed", "needs_attention") == (body["status"], body["execution"], body["run_status"])
    assert {"type": "MemberNotFound",
            "message": "no Patient with id 'nobody-api-21' in the care records store"} == body["failure"]
    assert body["follow_up_task"].startswith("Task/")
