"""The Da Vinci PAS operations: ``POST /fhir/Claim/$submit`` and ``POST /fhir/Claim/$inquire``.

``$submit`` takes a PAS request Bundle (or a ``Parameters`` whose ``resource`` parameter holds it) through the
same intake as ``POST /api/prior-auth`` (:func:`workflows.prior_auth_client.submit_prior_auth`: checks, the
immutable stored request, the run started under its business key, so the same request twice joins the first run
and a changed one under the same Claim id is refused), waits up to :data:`DECISION_WAIT_SECONDS` for the run's
determination, and answers a PAS response Bundle (:mod:`tools.pas_response`): the ClaimResponse the run wrote,
read from the records store, or, while the request is under review (parked for a reviewer, or not decided
within the wait), a pended ClaimResponse with review action A4 and the preAuthRef the run will issue.
``$inquire`` takes a PAS inquiry Bundle whose Claim carries the request's Claim id or identifier and its
patient, and answers the same way without waiting; only a submitter of that request may ask (anyone else, like
an unknown request, gets 404).

The caller is authenticated before the body is read (401). Every refusal is an OperationOutcome with the status a
FHIR server uses: 400 not JSON or not a Bundle, 401 not signed in, 404 an unknown request, 409 a changed
resubmission, 413 a note over CARELOOM_PA_MAX_NOTE_BYTES, 422 anything else the intake refuses (a Claim whose use
is not preauthorization among them); nothing is stored or started on a refusal. Submissions are access-log rows
as at ``/api/prior-auth`` (:mod:`tools.pas_audit`, channel ``fhir``); inquiries are rows ``prior_auth.inquire``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError

from api.deps import current_identity, get_client, get_criteria, get_settings, get_store
from api.identity import Identity
from api.routes_prior_auth import start_request, status_for
from api.visibility import record_access
from store.sql_records import SqlCareRecordStore
from store.submissions import SubmissionRecord, SubmissionStore
from tools.appeals import appeal_workflow_id
from tools.pas_audit import record_intake, refusal_outcome
from tools.pas_request import PriorAuthRequestError, SubmissionConflict
from tools.pas_response import (
    FHIR_JSON,
    InquiryKeys,
    determination_key,
    inquiry_keys,
    operation_bundle,
    operation_outcome,
    pended_claim_response,
    refusal_outcome_resource,
    response_bundle,
)
from workflows.prior_auth import PriorAuthWorkflow

__all__ = ["DECISION_WAIT_SECONDS", "DETERMINATION_ACTION_ID", "INQUIRE_ACTION", "fhir_caller", "fhir_response", "router"]

router = APIRouter(prefix="/fhir", tags=["Da Vinci PAS"])

DECISION_WAIT_SECONDS = 5.0
"""How long ``$submit`` waits for the run's determination before answering it pended (a module constant, not a
setting: tests set it on the module). A run parked for a reviewer is answered at once."""
_POLL_SECONDS = 0.2
_QUERY_TIMEOUT = timedelta(seconds=3)

DETERMINATION_ACTION_ID = "d1-determination"
"""The action id of the determination both recommenders propose (``agents/prior_auth_planner.py``; the model
recommender keeps the offline one's id): the preAuthRef of a request pended before the run proposed anything is
computed with it. Once the run has proposed, the id it proposed is used."""

INQUIRE_ACTION = "prior_auth.inquire"

_NOT_FOUND = ("no prior-authorization request with this Claim id or identifier for this patient that you submitted:"
              " check Claim.id or Claim.identifier and Claim.patient against the request you sent with Claim/$submit")
_REQUEST_BODY = {"requestBody": {
    "required": True, "description": "A PAS Bundle (FHIR R4 JSON), or a Parameters with it in 'resource'.",
    "content": {FHIR_JSON: {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}}}}


def fhir_response(status: int, resource: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(resource, status_code=status, media_type=FHIR_JSON, headers=headers)


def fhir_caller(request: Request) -> Identity | JSONResponse:
    """The authenticated caller, or the OperationOutcome answer (401, or 403 for a session without CSRF)."""
    try:
        return current_identity(request)
    except HTTPException as err:
        issue = "login" if err.status_code == 401 else "forbidden"
        return fhir_response(err.status_code, operation_outcome(issue, str(err.detail)), headers=err.headers)


async def _operation_body(request: Request) -> Any:  # noqa: ANN401 - any JSON; the parsers name what is wrong
    # Read after the caller was authenticated, as /api/prior-auth does.
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" ({err.msg} at line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise PriorAuthRequestError("not_a_bundle", f"the body is not JSON{where}: send the PAS Bundle as FHIR R4"
                                                    f" JSON (Content-Type: {FHIR_JSON})") from None
    return operation_bundle(body)


def _refused(err: PriorAuthRequestError) -> JSONResponse:
    status = 400 if err.code == "not_a_bundle" else status_for(err.code)
    return fhir_response(status, refusal_outcome_resource(err))


@dataclass(frozen=True)
class _RunState:
    run_id: str | None
    claim_response: str | None  # "ClaimResponse/<id>" once the run wrote its determination
    action_id: str | None  # the determination's action id, once proposed
    parked: bool  # waiting for a reviewer
    closed: bool
    decision_due: datetime | None


def _determination(actions: list[Any]) -> Any:  # noqa: ANN401 - ActionOutcome or None
    """The latest determination (a request answered after a pend has one per review round)."""
    return next((a for a in reversed(actions) if a.tool == "issue_determination"), None)


async def _run_state(client: Client, workflow_id: str) -> _RunState:
    """Where the request's run is: closed runs answer from their result, open ones from the ``status`` query."""
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError:
        return _RunState(None, None, None, parked=False, closed=False, decision_due=None)
    if described.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        action = _determination(result.actions)
        return _RunState(described.run_id, result.claim_response, action.action_id if action else None,
                         parked=False, closed=True, decision_due=result.decision_due)
    if described.status != WorkflowExecutionStatus.RUNNING:
        return _RunState(described.run_id, None, None, parked=False, closed=True, decision_due=None)
    try:
        status = await handle.query(PriorAuthWorkflow.status, rpc_timeout=_QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError):  # no worker answered in time: nothing known beyond the run itself
        return _RunState(described.run_id, None, None, parked=False, closed=False, decision_due=None)
    action = _determination(status.actions)
    written = action.reference if action is not None and action.status == "executed" else None
    return _RunState(described.run_id, written, action.action_id if action else None,
                     parked=bool(status.pending_approvals), closed=False, decision_due=status.decision_due)


async def _await_determination(client: Client, workflow_id: str, wait: float) -> _RunState:
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        state = await _run_state(client, workflow_id)
        if state.claim_response or state.parked or state.closed or asyncio.get_running_loop().time() >= deadline:
            return state
        await asyncio.sleep(_POLL_SECONDS)


def _answer(request: Request, store: SqlCareRecordStore, record: SubmissionRecord, coverage_id: str,
            state: _RunState, identifier: Any) -> JSONResponse:  # noqa: ANN401 - the request Bundle's identifier
    """The PAS response Bundle for the request's current state."""
    claim = store.get("Claim", record.claim_id)
    if claim is None:  # the Claim is written before the run starts, in the same transaction as the record
        raise RuntimeError(f"Claim/{record.claim_id} is recorded as submitted but is not in the records store")
    issued = None
    if state.claim_response:
        rtype, _, rid = state.claim_response.partition("/")
        issued = store.get(rtype, rid)
    if issued is None:
        coverage = store.get("Coverage", coverage_id)
        if coverage is None:
            raise RuntimeError(f"Coverage/{coverage_id} of Claim/{record.claim_id} is not in the records store")
        key = determination_key(record.workflow_id or "", state.run_id or "",
                                state.action_id or DETERMINATION_ACTION_ID)
        issued = pended_claim_response(claim, coverage, member_id=record.member_id, key=key,
                                       received_at=record.received_at, decision_due=state.decision_due)
    related = [r for r in (_referenced(store, issued.get("patient")), _referenced(store, issued.get("requestor")),
                           _referenced(store, issued.get("insurer")), claim) if r is not None]
    bundle = response_bundle(issued, related, base_url=f"{str(request.base_url).rstrip('/')}/fhir",
                             timestamp=datetime.now(UTC), identifier=identifier)
    return fhir_response(200, bundle)


def _referenced(store: SqlCareRecordStore, reference: Any) -> dict[str, Any] | None:  # noqa: ANN401
    value = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(value, str) or value.count("/") != 1:
        return None
    return store.get(*value.split("/", 1))


def _coverage_id(claim: dict[str, Any] | None) -> str:
    insurance = (claim or {}).get("insurance") or [{}]
    focal = next((i for i in insurance if i.get("focal")), insurance[0])
    return ((focal.get("coverage") or {}).get("reference") or "").rpartition("/")[2]


@router.post("/Claim/$submit", openapi_extra=_REQUEST_BODY, response_class=JSONResponse,
             responses={200: {"description": "PAS response Bundle: the ClaimResponse, decided or pended",
                              "content": {FHIR_JSON: {}}},
                        400: {"description": "Not JSON, or not a Bundle (OperationOutcome)"},
                        401: {"description": "Not signed in (checked before the body is read)"},
                        409: {"description": "The Claim id was already submitted with other content"},
                        413: {"description": "A note is larger than CARELOOM_PA_MAX_NOTE_BYTES"},
                        422: {"description": "Not a usable prior-authorization request, or over a limit"}})
async def submit(request: Request) -> JSONResponse:
    """Submit a PAS request; the answer is its ClaimResponse as it stands after a short wait."""
    caller = fhir_caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    settings, store, access_log = get_settings(request), get_store(request), request.app.state.access_log
    audit = {"user_id": caller.user_id, "role": caller.role, "channel": "fhir"}
    try:
        bundle = await _operation_body(request)
        handle, started, sub = await start_request(bundle, caller, client=get_client(request), store=store,
                                                   criteria=get_criteria(request), settings=settings)
    except PriorAuthRequestError as err:
        record_intake(access_log, **audit, outcome=refusal_outcome(err.code), code=err.code,
                      workflow_id=err.workflow_id if isinstance(err, SubmissionConflict) else None)
        return _refused(err)
    record_intake(access_log, **audit, outcome="started" if started else "duplicate", workflow_id=handle.id)
    record = SubmissionStore(store.db).latest(sub.claim_id)
    if record is None:
        raise RuntimeError(f"Claim/{sub.claim_id} was accepted but its submission record cannot be read")
    state = await _await_determination(get_client(request), handle.id, DECISION_WAIT_SECONDS)
    return _answer(request, store, record, sub.coverage_id, state, bundle.get("identifier"))


def _find(store: SqlCareRecordStore, keys: InquiryKeys) -> SubmissionRecord | None:
    """The newest stored version of the request the inquiry names, if it is that patient's."""
    submissions = SubmissionStore(store.db)
    candidates = [keys.claim_id] if keys.claim_id else []
    if keys.identifiers:
        wanted = set(keys.identifiers)
        candidates += [c["id"] for c in store.find_for_member("Claim", keys.patient_id)
                       if wanted & {(str(i.get("system") or ""), str(i.get("value")))
                                    for i in c.get("identifier") or []}]
    for claim_id in candidates:
        record = submissions.latest(claim_id)
        if record is not None and record.member_id == keys.patient_id:
            return record
    return None


@router.post("/Claim/$inquire", openapi_extra=_REQUEST_BODY, response_class=JSONResponse,
             responses={200: {"description": "PAS response Bundle: the ClaimResponse, decided or pended",
                              "content": {FHIR_JSON: {}}},
                        400: {"description": "Not JSON, or not a Bundle (OperationOutcome)"},
                        401: {"description": "Not signed in (checked before the body is read)"},
                        404: {"description": "No request you submitted with these identifiers"},
                        422: {"description": "The Claim is not a prior-authorization inquiry"}})
async def inquire(request: Request) -> JSONResponse:
    """The current state of a request you submitted, by its Claim id or identifier and patient."""
    caller = fhir_caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    store = get_store(request)
    try:
        bundle = await _operation_body(request)
        keys = inquiry_keys(bundle)
    except PriorAuthRequestError as err:
        record_access(request, caller, INQUIRE_ACTION, f"refused:{err.code}")
        return _refused(err)
    record = _find(store, keys)
    if (record is None or record.workflow_id is None
            or not SubmissionStore(store.db).is_submitter(record.workflow_id, caller.user_id)):
        # Someone else's request answers as an unknown one: ids are never confirmed.
        record_access(request, caller, INQUIRE_ACTION, "not_found")
        return fhir_response(404, operation_outcome("not-found", _NOT_FOUND))
    record_access(request, caller, INQUIRE_ACTION, "shown", workflow_id=record.workflow_id)
    state = await _run_state(get_client(request), record.workflow_id)
    if state.claim_response:
        # An appealed determination answers with its reconsideration's, once that is decided.
        appealed = await _run_state(get_client(request),
                                    appeal_workflow_id(state.claim_response.removeprefix("ClaimResponse/")))
        if appealed.claim_response:
            state = appealed
    return _answer(request, store, record, _coverage_id(store.get("Claim", record.claim_id)), state,
                   bundle.get("identifier"))
