"""The approval inbox as JSON: list, show, decide one item, decide in bulk."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from api.decisions import NOT_FOUND, DecisionRequest, public_detail, to_decision
from api.deps import Approvals, CurrentIdentity, Signer, TemporalClient, current_identity
from api.filters import visibility_value
from api.preview import preview_resources
from api.visibility import may_decide, may_decide_listed, record_access, visible_approval
from guardrails.approvals import DecisionResult, PendingApproval
from guardrails.policy import Role
from runtime.errors import DecisionRefused
from workflows.inbox import BulkItem, BulkItemResult, InboxFilter, InboxPage, decide, decide_bulk, list_inbox

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
    request: Request, approvals: Approvals, who: CurrentIdentity,
    queue: str | None = None, role: Role | None = None, priority: Literal["routine", "urgent"] | None = None,
    due_before: datetime | None = None, page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,1000}$")] = None,
) -> InboxPage:
    """Pending approvals you may decide (your role's and less senior roles'), earliest SLA deadline first, from
    the approvals projection (no Temporal call); ``cursor`` is the ``next_cursor`` of the previous page."""
    filters = InboxFilter(queue=visibility_value("queue", queue), role=role, priority=priority, due_before=due_before, max_role=who.role)
    try:
        page = await list_inbox(approvals, filters, page_size=page_size, cursor=cursor)
    except ValueError as err:
        raise HTTPException(status_code=422, detail=f"cursor: {err}; start from the first page") from None
    record_access(request, who, "approvals.list", f"{len(page.items)} items")
    return page


@router.get("/{workflow_id}/{approval_id}")
async def show_approval(request: Request, workflow_id: str, approval_id: str, client: TemporalClient,
                        who: CurrentIdentity) -> ApprovalView:
    """One pending approval you may decide and a preview of the FHIR resource(s) it would write."""
    item = await visible_approval(request, client, who, workflow_id, approval_id, action="approval.show")
    return ApprovalView(item=item, preview=preview_resources(item))


@router.post("/{workflow_id}/{approval_id}/decision")
async def decide_approval(workflow_id: str, approval_id: str, body: DecisionRequest, who: CurrentIdentity,
                          client: TemporalClient, signer: Signer, request: Request) -> DecisionResult:
    """Approve, reject (reason required), edit (new arguments, re-guarded) or reassign one item."""
    await may_decide(request, client, who, workflow_id, approval_id, action="approval.decide")
    return await decide(client, workflow_id, to_decision(approval_id, body, who), signer=signer)


@router.post("/bulk")
async def bulk(request: Request, body: BulkRequest, who: CurrentIdentity, client: TemporalClient,
               signer: Signer, approvals: Approvals) -> BulkResponse:
    """Decide a homogeneous selection; every item is validated and reported on its own. The approvals
    projection names each listed item's role and run (no query, no describe per item); an item it does not hold
    is looked up in its run. The run validates every decision itself."""
    rows = await asyncio.to_thread(approvals.rows_for, [(i.workflow_id, i.approval_id) for i in body.items])

    async def hidden(item: BulkItem) -> BulkItemResult | None:
        try:
            row = rows.get((item.workflow_id, item.approval_id))
            if row is None:
                await may_decide(request, client, who, item.workflow_id, item.approval_id, action="approval.bulk")
            else:
                may_decide_listed(request, who, item.workflow_id, item.approval_id, row.required_role,
                                  action="approval.bulk")
        except DecisionRefused as err:
            return BulkItemResult(workflow_id=item.workflow_id, approval_id=item.approval_id, ok=False,
                                  error_code=err.code, error=public_detail(err))
        return None

    refused = dict(zip([(i.workflow_id, i.approval_id) for i in body.items],
                       await asyncio.gather(*(hidden(i) for i in body.items)), strict=True))
    allowed = [i for i in body.items if refused[(i.workflow_id, i.approval_id)] is None]
    decided = {(r.workflow_id, r.approval_id): r for r in await decide_bulk(
        client, allowed, decision=body.decision, tool=body.tool, approver=who.user_id, role=who.role,
        reason=body.reason, signer=signer, run_ids={w: r.run_id for (w, _), r in rows.items()})} if allowed else {}
    results = [_public(refused[(i.workflow_id, i.approval_id)] or decided[(i.workflow_id, i.approval_id)])
               for i in body.items]
    ok = sum(r.ok for r in results)
    return BulkResponse(decided=ok, failed=len(results) - ok, results=results)


def _public(result: BulkItemResult) -> BulkItemResult:
    # The run's own refusals (unknown item, completed run) said which it was: one text for every not_found.
    if result.error_code == "not_found":
        return result.model_copy(update={"error": NOT_FOUND})
    return result
