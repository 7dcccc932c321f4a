"""The approval inbox as JSON: list, show, decide one item, decide in bulk."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from agents.approvals import DecisionResult, PendingApproval
from api.decisions import DecisionRequest, to_decision
from api.deps import CurrentIdentity, Signer, TemporalClient, current_identity
from api.preview import preview_resources
from guardrails.policy import Role
from workflows.outreach_client import (
    BulkItem,
    BulkItemResult,
    InboxFilter,
    InboxPage,
    decide,
    decide_bulk,
    get_approval,
    list_inbox,
)

__all__ = ["ApprovalView", "BulkRequest", "BulkResponse", "router"]

router = APIRouter(prefix="/api/approvals", dependencies=[Depends(current_identity)])


class BulkRequest(BaseModel):
    decision: Literal["approve", "reject"]
    tool: str = Field(description="Every item must be this tool.")
    reason: str | None = None
    items: list[BulkItem] = Field(min_length=1, max_length=500)


class BulkResponse(BaseModel):
    decided: int
    failed: int
    results: list[BulkItemResult]


class ApprovalView(BaseModel):
    item: PendingApproval
    preview: list[dict[str, Any]]


@router.get("")
async def list_approvals(
    client: TemporalClient,
    queue: str | None = None, role: Role | None = None, priority: Literal["routine", "urgent"] | None = None,
    due_before: datetime | None = None, page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^\d+$")] = None,
) -> InboxPage:
    """Pending approvals across all runs, earliest SLA deadline first, paginated."""
    filters = InboxFilter(queue=queue, role=role, priority=priority, due_before=due_before)
    return await list_inbox(client, filters, page_size=page_size, cursor=cursor)


@router.get("/{workflow_id}/{approval_id}")
async def show_approval(workflow_id: str, approval_id: str, client: TemporalClient) -> ApprovalView:
    """One pending approval and a preview of the FHIR resource(s) it would write."""
    item = await get_approval(client, workflow_id, approval_id)
    return ApprovalView(item=item, preview=preview_resources(item))


@router.post("/{workflow_id}/{approval_id}/decision")
async def decide_approval(workflow_id: str, approval_id: str, body: DecisionRequest, who: CurrentIdentity,
                          client: TemporalClient, signer: Signer) -> DecisionResult:
    """Approve, reject (reason required), edit (new arguments, re-guarded) or reassign one item."""
    return await decide(client, workflow_id, to_decision(approval_id, body, who), signer=signer)


@router.post("/bulk")
async def bulk(body: BulkRequest, who: CurrentIdentity, client: TemporalClient, signer: Signer) -> BulkResponse:
    """Decide a homogeneous selection; every item is validated and reported on its own."""
    results = await decide_bulk(client, body.items, decision=body.decision, tool=body.tool,
                                approver=who.user_id, role=who.role, reason=body.reason, signer=signer)
    ok = sum(r.ok for r in results)
    return BulkResponse(decided=ok, failed=len(results) - ok, results=results)
