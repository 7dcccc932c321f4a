"""Least privilege in the API: an approver sees only the items and runs of roles they may act for; anything
else is 404 exactly like an unknown id; every read of member context is in the access log."""

from __future__ import annotations

import json

import httpx
import pytest

from store.access_log import AccessLog
from store.connect import configured_database
from tests.api.conftest import auth
from tests.cli import careloom, clean_env
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.databases import session_env
from tests.fhir_factory import HIGH_RISK, make_member


async def test_items_and_runs_above_the_callers_role_are_404_like_unknown_ones_and_every_read_is_logged(
        start_run: StartRun, store, settings, http: httpx.AsyncClient, approvers: dict[str, str]) -> None:  # noqa: ANN001
    routine = await start_run(make_member(store, **HIGH_RISK), policy=ALWAYS_ASK)  # items for CC (task) and RN (plan)
    deceased = await start_run(make_member(store, deceased=True), policy=ALWAYS_ASK)  # one MD item only
    items = (await wait_for_status(routine, lambda s: len(s.pending_approvals) == 3)).pending_approvals
    (md_item,) = (await wait_for_status(deceased, lambda s: len(s.pending_approvals) == 1)).pending_approvals
    assert "md" == md_item.required_role
    plan = next(p for p in items if p.required_role == "rn")

    listed = (await http.get("/api/approvals", params={"page_size": 500}, headers=auth(approvers["cc.jones"]))).json()
    mine = {(i["workflow_id"], i["approval_id"]) for i in listed["items"]}
    assert {(routine.id, p.approval_id) for p in items if p.required_role == "care_coordinator"} <= mine
    assert all(i["required_role"] == "care_coordinator" for i in listed["items"])
    listed_md = (await http.get("/api/approvals", params={"page_size": 500}, headers=auth(approvers["md.lee"]))).json()
    assert {(routine.id, plan.approval_id), (deceased.id, md_item.approval_id)} <= {
        (i["workflow_id"], i["approval_id"]) for i in listed_md["items"]}

    hidden = await http.get(f"/api/approvals/{routine.id}/{plan.approval_id}", headers=auth(approvers["cc.jones"]))
    unknown = await http.get(f"/api/approvals/{routine.id}/a9-nothing.1", headers=auth(approvers["cc.jones"]))
    assert (404, 404) == (hidden.status_code, unknown.status_code)
    assert hidden.json()["detail"].replace(plan.approval_id, "X") == unknown.json()["detail"].replace("a9-nothing.1", "X")
    assert 200 == (await http.get(f"/api/approvals/{routine.id}/{plan.approval_id}",
                                  headers=auth(approvers["rn.kim"]))).status_code

    run_hidden = await http.get(f"/api/runs/{deceased.id}", headers=auth(approvers["rn.kim"]))
    run_unknown = await http.get("/api/runs/outreach-nobody-nothing", headers=auth(approvers["rn.kim"]))
    assert (404, 404) == (run_hidden.status_code, run_unknown.status_code)
    assert run_hidden.json()["detail"].replace(deceased.id, "X") == run_unknown.json()["detail"].replace(
        "outreach-nobody-nothing", "X")
    assert 200 == (await http.get(f"/api/runs/{deceased.id}", headers=auth(approvers["md.lee"]))).status_code
    assert 200 == (await http.get(f"/api/runs/{routine.id}", headers=auth(approvers["cc.jones"]))).status_code

    bulk = await http.post("/api/approvals/bulk", headers=auth(approvers["rn.kim"]), json={
        "decision": "approve", "tool": "create_task",
        "items": [{"workflow_id": deceased.id, "approval_id": md_item.approval_id, "digest": md_item.digest}]})
    assert [("not_found", False)] == [(r["error_code"], r["ok"]) for r in bulk.json()["results"]]
    assert 1 == len((await wait_for_status(deceased, lambda s: True)).pending_approvals)  # nothing decided

    log = AccessLog(configured_database(settings))
    reads = {(e.user_id, e.action, e.workflow_id, e.approval_id, e.outcome) for e in log.entries()}
    assert {("cc.jones", "approval.show", routine.id, plan.approval_id, "not_found"),
            ("rn.kim", "approval.show", routine.id, plan.approval_id, "shown"),
            ("rn.kim", "run.status", deceased.id, None, "not_found"),
            ("md.lee", "run.status", deceased.id, None, "shown"),
            ("rn.kim", "approval.bulk", deceased.id, md_item.approval_id, "not_found")} <= reads
    assert any(e.user_id == "cc.jones" and e.action == "approvals.list" for e in log.entries())
    with pytest.raises(Exception, match="append-only"):
        log.db.write(lambda db: db.rows("DELETE FROM access_log"))  # the database itself refuses

    shown = careloom(clean_env(**session_env(settings)), "ledger", "access", "--user", "md.lee",
                     "--workflow", deceased.id, "--json")
    assert 0 == shown.returncode, shown.stderr
    assert [("run.status", "shown")] == [(e["action"], e["outcome"]) for e in json.loads(shown.stdout)]


async def test_a_decided_item_above_the_callers_role_stays_hidden(
        start_run: StartRun, store, http: httpx.AsyncClient, approvers: dict[str, str]) -> None:  # noqa: ANN001
    """After an RN decided it, a care coordinator asking about the same item learns nothing (no 409 naming the
    outcome and the approver): the answer is the unknown-item 404. The run stays open (two items pending)."""
    handle = await start_run(make_member(store, **HIGH_RISK), policy=ALWAYS_ASK)
    items = (await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)).pending_approvals
    plan = next(p for p in items if p.required_role == "rn")
    url = f"/api/approvals/{handle.id}/{plan.approval_id}/decision"
    reject = {"decision": "reject", "digest": plan.digest, "reason": "plan needs a cardiology visit"}
    assert 200 == (await http.post(url, json=reject, headers=auth(approvers["rn.kim"]))).status_code
    approve = {"decision": "approve", "digest": plan.digest}
    asked = await http.post(url, json=approve, headers=auth(approvers["cc.jones"]))
    unknown = await http.post(f"/api/approvals/{handle.id}/a9-nothing.1/decision", json=approve,
                              headers=auth(approvers["cc.jones"]))
    assert (404, 404) == (asked.status_code, unknown.status_code), asked.text
    assert "rn.kim" not in asked.text and "reject" not in asked.text
    again = await http.post(url, json=approve, headers=auth(approvers["rn.ortiz"]))
    assert 409 == again.status_code and "rn.kim" in again.text  # an RN, who may see it, is told it was decided
