"""Prior-authorization intake: ``POST /api/prior-auth`` takes a Da Vinci PAS request Bundle.

201 when a triage run was started, 200 when the same request already has one
(joined, never a second run), 422 naming the problem and the fix when the
Bundle is not a usable prior-authorization request (nothing is written or
started then). The submitter is the signed-in caller, who may not approve the
run's actions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response
from pydantic import BaseModel

from api.deps import (
    AppSettings,
    Criteria,
    CurrentIdentity,
    RecordsStore,
    TemporalClient,
    current_identity,
)
from api.visibility import visible_run_status
from tools.pas_request import PriorAuthRequestError
from workflows.prior_auth import PriorAuthStatus, PriorAuthWorkflow
from workflows.prior_auth_client import submit_prior_auth

__all__ = ["PriorAuthAccepted", "router"]

router = APIRouter(prefix="/api/prior-auth", dependencies=[Depends(current_identity)], tags=["prior authorization"])


class PriorAuthAccepted(BaseModel):
    workflow_id: str
    started: bool
    priority: str
    received_at: datetime
    services: list[str]


@router.post("", status_code=201, responses={200: {"description": "The request already has a run (joined)"},
                                              422: {"description": "Not a usable prior-authorization request"}})
async def submit(response: Response, client: TemporalClient, store: RecordsStore, criteria: Criteria,
                 settings: AppSettings, caller: CurrentIdentity,
                 bundle: dict[str, Any] = Body(..., description="A PAS request Bundle (FHIR R4 JSON).")
                 ) -> PriorAuthAccepted:
    try:
        handle, started, sub = await submit_prior_auth(
            client, store, bundle, criteria=criteria, policy=settings.prior_auth_policy(),
            task_queue=settings.task_queue, salt=settings.pseudonym_salt.get_secret_value(),
            initiated_by=caller.user_id, tool_attempts=settings.tool_attempts,
            queues=settings.activity_queues())
    except PriorAuthRequestError as err:
        raise HTTPException(status_code=422, detail={"code": err.code, "message": str(err)}) from None
    if not started:
        response.status_code = 200
    return PriorAuthAccepted(workflow_id=handle.id, started=started, priority=sub.priority,
                             received_at=sub.received_at, services=[i.code for i in sub.items])


@router.get("/{workflow_id}")
async def status(request: Request, workflow_id: str, client: TemporalClient, who: CurrentIdentity) -> PriorAuthStatus:
    """A request's status, if it routed nothing to a human or routed something to a role you may act for."""
    return await visible_run_status(request, client, who, workflow_id, PriorAuthWorkflow.status,
                                    action="prior_auth.status")
