"""Outreach runs: the status of one run."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from api.deps import TemporalClient, current_identity
from workflows.outreach import MemberOutreachWorkflow, OutreachStatus

__all__ = ["router"]

router = APIRouter(prefix="/api/runs", dependencies=[Depends(current_identity)])


@router.get("/{workflow_id}")
async def run_status(workflow_id: str, client: TemporalClient) -> OutreachStatus:
    handle = client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id)
    try:
        return await handle.query(MemberOutreachWorkflow.status)
    except Exception as err:  # noqa: BLE001 - unknown or unreachable run
        raise HTTPException(status_code=404, detail=f"no run {workflow_id!r}: {err}") from None
