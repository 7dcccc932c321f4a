"""Appeals: ``POST /fhir/ClaimResponse/{id}/$appeal`` opens the reconsideration of an adverse determination.

The checks are :func:`tools.appeals.check_appeal` (a stored determination, a party to it, adverse, not itself a
reconsideration, before the notice's deadline, new evidence that answers the request's questionnaire in force);
the run is :func:`workflows.prior_auth_client.start_appeal`: a ``PriorAuthWorkflow`` under the determination's
appeal key, on the appeal clock of the policy's ``appeal_rules`` (72 hours expedited, 30 calendar days standard
for Medicare Advantage pre-service), decided by a physician who took no part in the determination appealed (the
run refuses their decisions; the worker checks it again from the records store before it writes). Its
ClaimResponse reaches the provider through ``Claim/$inquire`` and the PAS subscriptions.

Answers: 202 with an informational OperationOutcome naming the reconsideration and when it is due; refusals are
OperationOutcomes: 400 a body that is not usable Parameters, 401 not signed in, 403 not a party, 404 an unknown
determination, 409 already appealed, 422 not appealable (an approval, a reconsideration, past its deadline, or
new evidence that does not answer this request). Nothing is stored or started on a refusal. Every appeal and
refusal is an access-log row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import get_client, get_criteria, get_settings, get_store
from api.routes_fhir_pas import fhir_caller, fhir_response
from api.visibility import record_access
from guardrails.configured import prior_auth_policy
from store.submissions import SubmissionStore
from tools.appeals import AppealRefused, check_appeal, parse_appeal
from tools.pas_response import FHIR_JSON, operation_outcome
from workflows.agent_run import activity_queues
from workflows.prior_auth_client import start_appeal

__all__ = ["APPEAL_ACTION", "router"]

router = APIRouter(prefix="/fhir", tags=["Appeals"])

APPEAL_ACTION = "prior_auth.appeal"


@router.post("/ClaimResponse/{claim_response_id}/$appeal", response_class=JSONResponse, openapi_extra={
                 "requestBody": {"required": False, "description": "Parameters: expedited (valueBoolean), requester "
                                 "(valueReference, the member for plan staff), questionnaireResponse (resource)",
                                 "content": {FHIR_JSON: {"schema": {"type": "object"}}}}},
             responses={202: {"description": "Reconsideration started (informational OperationOutcome)"},
                        400: {"description": "Not usable Parameters"}, 401: {"description": "Not signed in"},
                        403: {"description": "Not the member or provider of record"},
                        404: {"description": "No such determination"}, 409: {"description": "Already appealed"},
                        422: {"description": "Not appealable: not adverse, a reconsideration, or past its deadline"}})
async def appeal(request: Request, claim_response_id: str) -> JSONResponse:
    """Appeal an adverse determination: a physician who took no part in it reconsiders the request."""
    caller = fhir_caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    store, settings = get_store(request), get_settings(request)
    try:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise AppealRefused(400, "structure", f"the body is not JSON: send FHIR Parameters ({FHIR_JSON}) or "
                                                  "no body") from None
        asked = parse_appeal(body)
        submissions = SubmissionStore(store.db)
        response = store.get("ClaimResponse", claim_response_id)
        claim_id = ((response or {}).get("request") or {}).get("reference", "").removeprefix("Claim/")
        record = submissions.latest(claim_id) if claim_id else None
        submitter = bool(record and record.workflow_id and submissions.is_submitter(record.workflow_id,
                                                                                     caller.user_id))
        case = check_appeal(store, claim_response_id, asked, caller=caller.user_id, role=caller.role,
                            submitter=submitter, criteria=get_criteria(request), today=datetime.now(UTC).date())
        if record is None:
            raise AppealRefused(404, "not-found", f"Claim/{claim_id} has no stored request to reconsider")
        handle = await start_appeal(
            get_client(request), store, case, record, filed_by=caller.user_id, expedited=asked.expedited,
            policy=prior_auth_policy(settings), task_queue=settings.task_queue, response=asked.response,
            tool_attempts=settings.tool_attempts, queues=activity_queues(settings))
    except AppealRefused as refused:
        record_access(request, caller, APPEAL_ACTION, f"refused:{refused.code}")
        return fhir_response(refused.status, operation_outcome(refused.code, str(refused)))
    record_access(request, caller, APPEAL_ACTION, "started", workflow_id=handle.id)
    rules = prior_auth_policy(settings).appeal_rules
    clock = (f"{rules.expedited_decision_hours} hours" if asked.expedited
             else f"{rules.standard_decision_days} calendar days")
    return fhir_response(202, operation_outcome(
        "informational", f"reconsideration {handle.id} of {case.claim_response} started: a physician who took no "
                         f"part in that decision decides within {clock} (appeal rules {rules.version}); ask for the "
                         f"result with Claim/$inquire", severity="information"))
