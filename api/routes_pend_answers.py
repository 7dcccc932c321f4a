"""A provider answers a pend: ``POST /fhir/QuestionnaireResponse`` with a completed DTR QuestionnaireResponse.

When a request is pended for documentation (a ClaimResponse with review action A4 and an information-request
Task), its run waits for the provider's answer until the documentation is due (the time frame extended by the
policy's ``pend_extension_days``). The provider completes the DTR Questionnaire of the request's service (from
``$questionnaire-package``), names the request in the DTR ``qr-context`` extension (``Claim/<id>``) and posts it
here. The response is checked against the stored request (:func:`tools.qr_answers.check_response`: this request,
this member, the criteria in force, an attesting Practitioner or Organization), stored once under an id derived
from its content and the request, and handed to the run by its ``answer_pend`` update (the id only): the run
reviews all the evidence again, the attested answers cited with their attester, and decides as it would have
(an approval with every criterion met may run alone; anything adverse goes to a physician). The decision reaches
the provider's subscriptions and ``Claim/$inquire``.

Only a submitter of the request may answer (anyone else, like an unknown request, gets 404). Refusals are
OperationOutcomes with the status a FHIR server uses: 400 not a QuestionnaireResponse or no request named,
401 not signed in, 404 an unknown request, 409 a request that is not waiting for documentation, 422 a response
that does not answer this request's questionnaire in force; nothing is stored or started on a refusal (a
response stored just before the run refused it is deleted again).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api.deps import get_client, get_criteria, get_store
from api.routes_fhir_pas import fhir_caller, fhir_response
from api.visibility import record_access
from store.submissions import SubmissionStore
from tools.pas_models import PendAnswer
from tools.pas_response import FHIR_JSON, operation_outcome
from tools.qr_answers import QuestionnaireAnswerError, check_response, request_of
from tools.qr_store import stored_form
from workflows.prior_auth import PriorAuthWorkflow

__all__ = ["ANSWER_ACTION", "router"]

router = APIRouter(prefix="/fhir", tags=["Da Vinci DTR"])

ANSWER_ACTION = "prior_auth.pend_answer"
_QUERY_TIMEOUT = timedelta(seconds=5)
_UPDATE_TIMEOUT = timedelta(seconds=30)

_NOT_FOUND = ("no prior-authorization request with this Claim id that you submitted: name the request you sent"
              " with Claim/$submit in the qr-context extension (valueReference Claim/<id>)")


def _refused(request: Request, caller: Any, err: QuestionnaireAnswerError,  # noqa: ANN401 - Identity
             workflow_id: str | None = None) -> JSONResponse:
    record_access(request, caller, ANSWER_ACTION, f"refused:{err.code}", workflow_id=workflow_id)
    return fhir_response(err.status, operation_outcome(err.code, str(err)))


@router.post("/QuestionnaireResponse", response_class=JSONResponse, openapi_extra={"requestBody": {
                 "required": True, "description": "A completed DTR QuestionnaireResponse (FHIR R4 JSON) naming the "
                                                  "pended request in its qr-context extension.",
                 "content": {FHIR_JSON: {"schema": {"type": "object"}}}}},
             responses={201: {"description": "Stored and handed to the request's review (the stored response)",
                              "content": {FHIR_JSON: {}}},
                        400: {"description": "Not a QuestionnaireResponse, or no request named (OperationOutcome)"},
                        401: {"description": "Not signed in (checked before the body is read)"},
                        404: {"description": "No request you submitted with this Claim id"},
                        409: {"description": "The request is not waiting for documentation"},
                        422: {"description": "Does not answer this request's questionnaire in force"}})
async def answer_pend(request: Request) -> JSONResponse:
    """Answer a pended request with the completed questionnaire; it is reviewed again with the answers."""
    caller = fhir_caller(request)
    if isinstance(caller, JSONResponse):
        return caller
    store, client = get_store(request), get_client(request)
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _refused(request, caller, QuestionnaireAnswerError(
            400, "structure", f"the body is not JSON: send the QuestionnaireResponse as FHIR R4 JSON ({FHIR_JSON})"))
    try:
        claim_id = request_of(body)
    except QuestionnaireAnswerError as err:
        return _refused(request, caller, err)
    submissions = SubmissionStore(store.db)
    record = submissions.latest(claim_id)
    if (record is None or record.workflow_id is None
            or not submissions.is_submitter(record.workflow_id, caller.user_id)):
        return _refused(request, caller, QuestionnaireAnswerError(404, "not-found", _NOT_FOUND))
    workflow_id = record.workflow_id
    claim = store.get("Claim", claim_id)
    if claim is None:
        raise RuntimeError(f"Claim/{claim_id} is recorded as submitted but is not in the records store")
    try:
        checked = check_response(body, claim=claim, member_id=record.member_id, criteria=get_criteria(request))
    except QuestionnaireAnswerError as err:
        return _refused(request, caller, err, workflow_id)
    handle = client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)
    try:
        status = await handle.query(PriorAuthWorkflow.status, rpc_timeout=_QUERY_TIMEOUT)
    except (RPCError, WorkflowQueryFailedError):
        status = None
    if status is None or status.documentation_due is None:
        return _refused(request, caller, QuestionnaireAnswerError(
            409, "conflict", "the request is not waiting for documentation (it is under review, decided or closed):"
                             " ask for its state with Claim/$inquire"), workflow_id)
    stored, key = stored_form(checked.response, claim_id, record.version)
    saved, created = store.create_once([stored], key)
    answer = PendAnswer(questionnaire_response=saved[0]["id"], submitted_by=caller.user_id,
                        received_at=datetime.now(UTC))
    try:
        await handle.execute_update(PriorAuthWorkflow.answer_pend, answer, rpc_timeout=_UPDATE_TIMEOUT)
    except (WorkflowUpdateFailedError, RPCError) as err:
        if created:  # the run did not take it: nothing of the refused answer stays
            store.discard_created(key)
        cause = err.cause if isinstance(err, WorkflowUpdateFailedError) else None
        message = cause.message if isinstance(cause, ApplicationError) else f"the run could not take the answer: {err}"
        return _refused(request, caller, QuestionnaireAnswerError(409, "conflict", message), workflow_id)
    record_access(request, caller, ANSWER_ACTION, "accepted", workflow_id=workflow_id)
    return fhir_response(201, saved[0], headers={"Location": f"QuestionnaireResponse/{saved[0]['id']}"})
