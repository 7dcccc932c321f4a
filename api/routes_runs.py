"""Outreach runs: the status of one run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from api.deps import CurrentIdentity, TemporalClient, current_identity
from api.visibility import visible_run_status
from workflows.outreach import MemberOutreachWorkflow, OutreachStatus

__all__ = ["router"]

router = APIRouter(prefix="/api/runs", dependencies=[Depends(current_identity)])


@router.get("/{workflow_id}")
async def run_status(request: Request, workflow_id: str, client: TemporalClient,
                     who: CurrentIdentity) -> OutreachStatus:
    """A run's status, if it routed nothing to a human or routed something to a role you may act for."""
    return await visible_run_status(request, client, who, workflow_id, MemberOutreachWorkflow.status,
                                    action="run.status")
