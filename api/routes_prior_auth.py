"""Prior-authorization intake: ``POST /api/prior-auth`` takes a Da Vinci PAS request Bundle.

The caller is authenticated before the body is read (401 for anyone else, whatever they sent). Then: 201 when
a triage run was started, 200 when the identical request already has one (joined, never a second run), 409
when the Claim id was already submitted with other content or for another member (naming what differs; the
stored request and its run are unchanged), 413 for a note over CARELOOM_PA_MAX_NOTE_BYTES, 422 naming the
problem and the fix when the Bundle is not a usable prior-authorization request or has too many lines or notes.
Nothing is written or started on a refusal. Every submission is an access-log row and one log line
(:mod:`tools.pas_audit`). Whoever submits a request may not decide it (:mod:`api.submitters`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel
from temporalio.client import Client, WorkflowHandle

from api.deps import (
    AppSettings,
    Criteria,
    CurrentIdentity,
    RecordsStore,
    TemporalClient,
    current_identity,
)
from api.identity import Identity
from api.visibility import visible_run_status
from guardrails.configured import prior_auth_policy
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tools.criteria import CriteriaSet
from tools.pas_audit import record_intake, refusal_outcome
from tools.pas_limits import IntakeLimits
from tools.pas_request import PriorAuthRequestError, SubmissionConflict
from workflows.agent_run import activity_queues
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_client import submit_prior_auth
from workflows.prior_auth_models import PriorAuthStatus

__all__ = ["PriorAuthAccepted", "router", "start_request", "status_for"]

router = APIRouter(prefix="/api/prior-auth", dependencies=[Depends(current_identity)], tags=["prior authorization"])

_STATUS = {"conflict": 409, "note_too_large": 413}


def status_for(code: str) -> int:
    """The HTTP status of a refused request: 409 conflict, 413 a note too large, 422 anything else."""
    return _STATUS.get(code, 422)


class PriorAuthAccepted(BaseModel):
    workflow_id: str
    started: bool
    priority: str
    received_at: datetime
    services: list[str]


async def _bundle(request: Request) -> Any:  # noqa: ANN401 - any JSON; the parser names what is wrong with it
    # Read here, after the caller was authenticated: a declared Body parameter is parsed before any dependency.
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        where = f" ({err.msg} at line {err.lineno})" if isinstance(err, json.JSONDecodeError) else ""
        raise PriorAuthRequestError("not_a_bundle", f"the body is not JSON{where}: send the PAS request Bundle"
                                                    " as FHIR R4 JSON (Content-Type: application/json)") from None


async def start_request(bundle: Any, caller: Identity, *, client: Client, store: SqlCareRecordStore,  # noqa: ANN401
                        criteria: CriteriaSet, settings: Settings) -> tuple[WorkflowHandle[Any, Any], bool, Any]:
    """The intake both channels share (``/api/prior-auth`` and PAS ``Claim/$submit``): the deployment's policy,
    queues and limits applied, the caller recorded as the submitter. Raises PriorAuthRequestError."""
    return await submit_prior_auth(
        client, store, bundle, criteria=criteria, policy=prior_auth_policy(settings),
        task_queue=settings.task_queue, salt=settings.pseudonym_salt.get_secret_value(),
        initiated_by=caller.user_id, tool_attempts=settings.tool_attempts, queues=activity_queues(settings),
        limits=IntakeLimits(max_items=settings.pa_max_items, max_notes=settings.pa_max_notes,
                            max_note_bytes=settings.pa_max_note_bytes))


@router.post("", status_code=201, openapi_extra={"requestBody": {
                 "required": True, "description": "A PAS request Bundle (FHIR R4 JSON).",
                 "content": {"application/json": {"schema": {"type": "object"}}}}},
             responses={200: {"description": "The identical request already has a run (joined)"},
                        401: {"description": "Not signed in (checked before the body is read)"},
                        409: {"description": "The Claim id was already submitted with other content"},
                        413: {"description": "A note is larger than CARELOOM_PA_MAX_NOTE_BYTES"},
                        422: {"description": "Not a usable prior-authorization request, or over a limit"}})
async def submit(request: Request, response: Response, client: TemporalClient, store: RecordsStore,
                 criteria: Criteria, settings: AppSettings, caller: CurrentIdentity) -> PriorAuthAccepted:
    audit = {"user_id": caller.user_id, "role": caller.role, "channel": "api"}
    access_log = request.app.state.access_log
    try:
        bundle = await _bundle(request)
        handle, started, sub = await start_request(bundle, caller, client=client, store=store, criteria=criteria,
                                                   settings=settings)
    except PriorAuthRequestError as err:
        record_intake(access_log, **audit, outcome=refusal_outcome(err.code), code=err.code,
                      workflow_id=err.workflow_id if isinstance(err, SubmissionConflict) else None)
        raise HTTPException(status_code=status_for(err.code), detail={"code": err.code, "message": str(err)}) from None
    record_intake(access_log, **audit, outcome="started" if started else "duplicate", workflow_id=handle.id)
    if not started:
        response.status_code = 200
    return PriorAuthAccepted(workflow_id=handle.id, started=started, priority=sub.priority,
                             received_at=sub.received_at, services=[i.code for i in sub.items])


@router.get("/{workflow_id}")
async def status(request: Request, workflow_id: str, client: TemporalClient, who: CurrentIdentity) -> PriorAuthStatus:
    """A request's status, if it routed nothing to a human or routed something to a role you may act for."""
    return await visible_run_status(request, client, who, workflow_id, PriorAuthWorkflow.status,
                                    action="prior_auth.status")
