"""The attacks on prior-authorization intake (issue 20), over a real socket, worker and Temporal server:
a changed or cross-member resubmission (409, case unchanged), a resubmitter approving (403), oversized requests
(422/413, nothing written), 401 before the body is read, and the access-log rows of each; also ``um submit``."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import httpx
import pytest

from store.access_log import AccessLog
from store.submissions import SubmissionStore
from tests.api.conftest import auth
from tests.cli import careloom, clean_env
from tests.conftest import wait_for_status
from tests.databases import session_env
from tests.pas_factory import MRI_NOTES_AGAINST, make_pas_request
from tools.pas_request import load_notes
from workflows.prior_auth import PriorAuthWorkflow


@pytest.fixture
def http(worker_http: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API with a worker on its task queue (tests/api/conftest.py)."""
    return worker_http


def _entry(bundle, resource_type):
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def _case(store, claim_id: str):
    """Every stored byte of a request: its submission rows and the content of each resource it lists."""
    record = SubmissionStore(store.db).latest(claim_id)
    rows = store.db.read(lambda db: (
        db.rows("SELECT * FROM prior_auth_submissions WHERE claim_id = :c", {"c": claim_id}),
        [db.rows("SELECT content, content_sha256, updated_at FROM resources WHERE resource_type = :t AND id = :i",
                 dict(zip("ti", key.split("/", 1), strict=True))) for key in (record.resources if record else [])]))
    return record, rows


async def _run_input(client, workflow_id: str) -> tuple[str, bytes]:
    """The run's id and its input exactly as Temporal recorded it."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return started.original_execution_run_id, started.input.SerializeToString()


def _submits(store, user_id: str, since: datetime) -> list[tuple[str, str | None]]:
    return [(e.outcome, e.workflow_id) for e in AccessLog(store.db).entries(user_id=user_id, since=since)
            if e.action == "prior_auth.submit"]


async def test_a_changed_resubmission_is_409_and_the_running_case_is_unchanged(
        http: httpx.AsyncClient, client, store, approvers: dict[str, str]) -> None:
    """Quantity 14 -> 365, another Claim type and note: 409 naming each; stored case and run input byte-identical."""
    since = datetime.now(UTC)
    request = make_pas_request(store, quantity=14, notes=MRI_NOTES_AGAINST)
    first = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["rn.ortiz"]))
    workflow_id = first.json()["workflow_id"]
    before = _case(store, request.claim_id), await _run_input(client, workflow_id)
    claim = _entry(request.bundle, "Claim")
    claim["item"][0]["quantity"]["value"] = 365
    claim["type"]["coding"][0]["code"] = "institutional"
    _entry(request.bundle, "DocumentReference")["content"][0]["attachment"]["data"] = base64.b64encode(
        b"Eight weeks of physical therapy failed; progressive weakness.").decode()
    changed = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["cc.jones"]))

    try:
        assert (201, 409, "conflict") == (first.status_code, changed.status_code, changed.json()["detail"]["code"])
        message = changed.json()["detail"]["message"]
        assert (f"with other content: item 1 quantity 14 -> 365; Claim type; DocumentReference {request.note_ids[0]}"
                " content. ") in message and "new Claim id" in message
        assert before == (_case(store, request.claim_id), await _run_input(client, workflow_id))
        assert 14 == store.get("Claim", request.claim_id)["item"][0]["quantity"]["value"]
        assert ([("started", workflow_id)], [("refused:conflict", workflow_id)]) == (
            _submits(store, "rn.ortiz", since), _submits(store, "cc.jones", since))
    finally:
        await client.get_workflow_handle(workflow_id).terminate("test finished")


async def test_a_claim_id_reused_for_another_member_is_409_and_the_first_run_keeps_its_notes(
        http: httpx.AsyncClient, client, store, approvers: dict[str, str]) -> None:
    """Member B's request under member A's Claim id: 409; A's case (and the notes A's run reads) unchanged."""
    a = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    b = make_pas_request(store)
    first = await http.post("/api/prior-auth", json=a.bundle, headers=auth(approvers["rn.ortiz"]))
    workflow_id = first.json()["workflow_id"]
    before = _case(store, a.claim_id), await _run_input(client, workflow_id), load_notes(store, a.claim_id)
    _entry(b.bundle, "Claim")["id"] = a.claim_id
    reused = await http.post("/api/prior-auth", json=b.bundle, headers=auth(approvers["rn.ortiz"]))

    try:
        assert (201, 409) == (first.status_code, reused.status_code)
        assert "was already submitted for another member" in reused.json()["detail"]["message"]
        assert before == (_case(store, a.claim_id), await _run_input(client, workflow_id),
                          load_notes(store, a.claim_id))
        assert [] == store.find_for_member("Claim", b.member_id)
    finally:
        await client.get_workflow_handle(workflow_id).terminate("test finished")


async def test_a_resubmitter_may_not_approve_the_request(http: httpx.AsyncClient, client, store,
                                                         approvers: dict[str, str]) -> None:
    """An MD who resubmits someone's request identically joins its run (200) and is then refused its decision
    (403), though the run's own rule only knows the first submitter; the refusal is in the access log."""
    since = datetime.now(UTC)
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    first = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["rn.ortiz"]))
    again = await http.post("/api/prior-auth", json=request.bundle, headers=auth(approvers["md.lee"]))
    workflow_id = first.json()["workflow_id"]
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    try:
        status = await wait_for_status(handle, lambda s: bool(s.pending_approvals), query=PriorAuthWorkflow.status)
        item = status.pending_approvals[0]
        decided = await http.post(f"/api/approvals/{workflow_id}/{item.approval_id}/decision",
                                  json={"decision": "approve", "digest": item.digest}, headers=auth(approvers["md.lee"]))

        assert (201, 200, workflow_id) == (first.status_code, again.status_code, again.json()["workflow_id"])
        assert (403, f"you submitted this request ({workflow_id}): whoever submits a prior-authorization request"
                " never decides it; ask another reviewer of the queue to decide it") == (
            decided.status_code, decided.json()["detail"])
        assert ["rn.ortiz", "md.lee"] == SubmissionStore(store.db).submitters(workflow_id)
        assert [item.approval_id] == [p.approval_id for p in (await handle.query(PriorAuthWorkflow.status)
                                                               ).pending_approvals]
        assert [("duplicate", workflow_id)] == _submits(store, "md.lee", since)
        assert ["refused:submitter"] == [e.outcome for e in AccessLog(store.db).entries(
            user_id="md.lee", since=since, workflow_id=workflow_id) if e.action == "approval.decide"]
    finally:
        await handle.terminate("test finished")


async def test_a_3000_line_claim_is_422_and_nothing_is_written(http: httpx.AsyncClient, store,
                                                               approvers: dict[str, str]) -> None:
    """3,000 service lines (~0.5 MB, under the body limit): 422 naming limit, value and setting; nothing stored."""
    since = datetime.now(UTC)
    request = make_pas_request(store, extra_codes=("72148",) * 2999)
    body = json.dumps(request.bundle).encode()
    refused = await http.post("/api/prior-auth", content=body, headers={
        **auth(approvers["cc.jones"]), "Content-Type": "application/json"})

    assert 400_000 < len(body) < 1_048_576
    assert (422, "too_many_items") == (refused.status_code, refused.json()["detail"]["code"])
    assert all(s in refused.json()["detail"]["message"] for s in ("3000 service lines", "at most 50",
                                                                  "CARELOOM_PA_MAX_ITEMS"))
    assert (None, None) == (store.get("Claim", request.claim_id), SubmissionStore(store.db).latest(request.claim_id))
    assert [("refused:limit", None)] == _submits(store, "cc.jones", since)


async def test_a_700_kb_note_is_413_and_nothing_is_written(http: httpx.AsyncClient, store,
                                                           approvers: dict[str, str]) -> None:
    """A 700,000-byte note: 413 naming its size, the limit and CARELOOM_PA_MAX_NOTE_BYTES; nothing stored."""
    request = make_pas_request(store, notes=(("Lumbar radiculopathy. " * 31_819)[:700_000],))
    body = json.dumps(request.bundle).encode()
    refused = await http.post("/api/prior-auth", content=body, headers={
        **auth(approvers["cc.jones"]), "Content-Type": "application/json"})

    assert 900_000 < len(body) < 1_048_576  # under the HTTP body limit: only the note limit can refuse it
    assert (413, "note_too_large") == (refused.status_code, refused.json()["detail"]["code"])
    assert all(s in refused.json()["detail"]["message"] for s in ("700,000 bytes", "at most 200,000 bytes",
                                                                  "CARELOOM_PA_MAX_NOTE_BYTES"))
    assert (None, None) == (store.get("Claim", request.claim_id), SubmissionStore(store.db).latest(request.claim_id))


async def test_the_caller_is_authenticated_before_the_body_is_read(http: httpx.AsyncClient,
                                                                   approvers: dict[str, str]) -> None:
    """No token and a body that is not JSON: 401 (it was 422); signed in, the same body is 422 naming the fix."""
    anonymous = await http.post("/api/prior-auth", content=b"{not json", headers={"Content-Type": "application/json"})
    signed_in = await http.post("/api/prior-auth", content=b"{not json", headers={
        **auth(approvers["cc.jones"]), "Content-Type": "application/json"})

    assert (401, 422) == (anonymous.status_code, signed_in.status_code)
    assert signed_in.json()["detail"]["message"].startswith("the body is not JSON (Expecting property name")


def test_um_submit_refuses_a_request_over_a_limit_with_exit_2(settings, store, client, tmp_path) -> None:
    """``careloom um submit`` of a 3,000-line Claim: exit 2, the limit's message, nothing stored, logged."""
    since = datetime.now(UTC)
    request = make_pas_request(store, extra_codes=("72148",) * 2999)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(request.bundle), encoding="utf-8")
    env = clean_env(TEMPORAL_ADDRESS=client.service_client.config.target_host, **session_env(settings),
                    CARELOOM_PSEUDONYM_SALT=settings.pseudonym_salt.get_secret_value())
    done = careloom(env, "um", "submit", str(path), "--as", "intake-cli-test", "--json")

    assert 2 == done.returncode, done.stderr
    assert "too_many_items" == json.loads(done.stdout)[0]["error"]
    assert "CARELOOM_PA_MAX_ITEMS" in json.loads(done.stdout)[0]["message"]
    assert store.get("Claim", request.claim_id) is None
    assert [("refused:limit", None)] == _submits(store, "intake-cli-test", since)


def test_careloom_approvals_refuses_a_submitter(settings, store, client, approvers) -> None:
    """``careloom approvals approve`` by a request's submitter: exit 1, "you submitted this request", before any
    decision is signed or sent."""
    from tools.pas_request import parse_pas_bundle, save_submission

    request = make_pas_request(store)
    workflow_id = f"prior-auth-cli-{request.claim_id}"
    save_submission(store, request.bundle, parse_pas_bundle(request.bundle), submitted_by="md.lee",
                    workflow_id=workflow_id)
    env = clean_env(TEMPORAL_ADDRESS=client.service_client.config.target_host, **session_env(settings),
                    CARELOOM_PSEUDONYM_SALT=settings.pseudonym_salt.get_secret_value())
    done = careloom(env, "approvals", "approve", workflow_id, "a1-determination.1", "--digest", "0" * 64,
                    "--as", "md.lee")

    assert 1 == done.returncode, done.stdout
    assert f"refused (forbidden): you submitted this request ({workflow_id})" in " ".join(done.stderr.split())
