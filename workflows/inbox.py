"""The inbox: every program's pending approvals listed (from the approvals projection), read and decided, by
workflow id (the CLI, the API and the web inbox share it)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from guardrails.approvals import ApprovalDecision, DecisionResult, PendingApproval
from guardrails.policy import Role
from guardrails.signing import DecisionSigner
from runtime.errors import DecisionRefused
from store.approval_items import ApprovalItems
from workflows.agent_run import AgentRun
from workflows.approval_projection import query_of


__all__ = ["BulkItem", "BulkItemResult", "DecisionRejected", "InboxFilter", "InboxPage", "decide", "decide_bulk",
           "get_approval", "list_inbox", "list_pending_approvals"]


DECIDE_TIMEOUT = timedelta(seconds=30)

DecisionRejected = DecisionRefused
"""Kept for importers: the refusal is :class:`runtime.errors.DecisionRefused`."""


class InboxFilter(BaseModel):
    """Filters for the cross-run inbox; all optional."""

    queue: str | None = None
    role: Role | None = None
    priority: Literal["routine", "urgent"] | None = None
    due_before: datetime | None = None
    member: str | None = Field(default=None, description="Member pseudonym.")
    max_role: Role | None = Field(default=None, description=(
        "Least privilege: only items this role may decide (its own and less senior roles'), set from the caller."))


class InboxPage(BaseModel):
    items: list[PendingApproval]
    total_runs: int = Field(description="Runs with matching pending approvals.")
    total_items: int = Field(default=0, description="Matching pending approvals.")
    next_cursor: str | None = Field(description="Pass back to get the next page; None on the last page.")


async def list_inbox(items: ApprovalItems, filters: InboxFilter | None = None, *, page_size: int = 50,
                     cursor: str | None = None) -> InboxPage:
    """A page of pending approvals across all runs, earliest SLA deadline first, from the approvals projection
    (:mod:`workflows.approval_projection`): one indexed SQL query, no visibility call, no run queried. The
    cursor is opaque (keyset: the 100th page costs what the first does); ValueError for one we did not make."""
    filters = filters or InboxFilter()
    query = query_of(queue=filters.queue, role=filters.role, max_role=filters.max_role, priority=filters.priority,
                     due_before=filters.due_before, member=filters.member)
    page = await asyncio.to_thread(items.page, query, limit=page_size, cursor=cursor)
    return InboxPage(items=[PendingApproval.model_validate_json(i) for i in page.items], total_runs=page.total_runs,
                     total_items=page.total_items, next_cursor=page.next_cursor)


async def _pending_of(client: Client, workflow_id: str, **kwargs: Any) -> list[PendingApproval]:
    """A run's pending approvals, whatever its program (the runtime's ``approvals`` query)."""
    return await client.get_workflow_handle(workflow_id).query(AgentRun.approvals, **kwargs)


async def list_pending_approvals(items: ApprovalItems, *, role: str | None = None) -> list[PendingApproval]:
    """Every pending approval across all running runs of every program, earliest deadline first."""
    found: list[PendingApproval] = []
    cursor: str | None = None
    while True:
        page = await list_inbox(items, InboxFilter(role=role), page_size=500, cursor=cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def get_approval(client: Client, workflow_id: str, approval_id: str) -> PendingApproval:
    """One pending approval; DecisionRejected(not_found) if the run or the item is unknown."""
    missing = DecisionRejected("not_found", f"no pending approval {approval_id!r} in {workflow_id}")
    try:
        pending = await _pending_of(client, workflow_id, rpc_timeout=timedelta(seconds=10))
    except WorkflowQueryFailedError:
        raise missing from None  # not a careloom run (no approvals query): the same answer as an unknown one
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise missing from None  # one answer for an unknown run and an unknown item: ids are not confirmed
        raise DecisionRefused("unavailable", f"the run {workflow_id} did not answer ({err.message}); retry "
                                             "shortly (is a worker running?)") from None
    for item in pending:
        if item.approval_id == approval_id:
            return item
    raise missing


async def decide(client: Client, workflow_id: str, decision: ApprovalDecision, *,
                 signer: DecisionSigner | None = None, run_id: str | None = None) -> DecisionResult:
    """Send a decision through the ``decide`` update; a refusal raises DecisionRejected.

    ``signer`` (the API's and CLI's, after they authenticated the approver) signs it for this run: a run
    whose policy names decision keys refuses an unsigned one. ``run_id`` (the approvals projection's, for a
    bulk decision) saves asking Temporal which run runs now; a stale one is refused as not found.
    """
    handle = client.get_workflow_handle(workflow_id)
    if signer is not None:
        # The signature binds the run that runs now: a decision cannot be replayed into a restarted run of
        # this workflow id, and the update goes to exactly that run.
        try:
            run_id = run_id or (await handle.describe(rpc_timeout=DECIDE_TIMEOUT)).run_id
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise DecisionRejected("not_found", f"no pending approval {decision.approval_id!r} in "
                                                    f"{workflow_id}") from None
            raise DecisionRefused("unavailable", f"Temporal did not answer for {workflow_id} ({err.message}); "
                                                 "retry shortly") from None
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        key_id = signer.key_id
        if len(signer.keys) > 1:  # a rotation: sign with a key this run knows
            try:
                key_id = signer.key_for(await handle.query(AgentRun.decision_key_ids))
            except (RPCError, WorkflowQueryFailedError):
                pass  # the update will say what is wrong with the run
        decision = signer.sign(decision, workflow_id, run_id, key_id=key_id)
    try:
        # Bounded: with no worker polling (or a failing workflow task) an update would wait for ever.
        return await handle.execute_update(AgentRun.decide, decision, rpc_timeout=DECIDE_TIMEOUT)
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise DecisionRefused("unavailable", (
            f"the run {workflow_id} did not take the decision within {DECIDE_TIMEOUT.total_seconds():.0f} s "
            "(no worker polling its task queue?); nothing was decided, retry shortly")) from None
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            raise DecisionRejected(cause.type or "invalid", cause.message) from None
        raise DecisionRejected("invalid", str(cause or err)) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise DecisionRejected("not_found", (
                f"{workflow_id} is not running ({err.message}); it has completed or the id is wrong. "
                "See `careloom outreach status` for its outcome")) from None
        raise DecisionRefused("unavailable", f"Temporal refused the decision for {workflow_id} ({err.message}); "
                                             "retry shortly") from None


class BulkItem(BaseModel):
    workflow_id: str
    approval_id: str
    digest: str


class BulkItemResult(BaseModel):
    workflow_id: str
    approval_id: str
    ok: bool
    result: DecisionResult | None = None
    error_code: str | None = None
    error: str | None = None


async def decide_bulk(client: Client, items: list[BulkItem], *, decision: Literal["approve", "reject"],
                      tool: str, approver: str, role: Role, reason: str | None = None,
                      concurrency: int = 16, signer: DecisionSigner | None = None,
                      run_ids: dict[str, str] | None = None) -> list[BulkItemResult]:
    """Decide many homogeneous items; each is validated on its own and reported on its own. ``run_ids``
    (workflow id -> run id, from the approvals projection) saves a describe per item."""
    limit = asyncio.Semaphore(concurrency)

    async def one(item: BulkItem) -> BulkItemResult:
        base = {"workflow_id": item.workflow_id, "approval_id": item.approval_id}
        async with limit:
            try:
                payload = ApprovalDecision(approval_id=item.approval_id, digest=item.digest, decision=decision,
                                           approver=approver, role=role, reason=reason, bulk_tool=tool)
                return BulkItemResult(**base, ok=True, result=await decide(
                    client, item.workflow_id, payload, signer=signer, run_id=(run_ids or {}).get(item.workflow_id)))
            except DecisionRejected as err:
                return BulkItemResult(**base, ok=False, error_code=err.code, error=str(err))
            except ValueError as err:
                return BulkItemResult(**base, ok=False, error_code="invalid", error=str(err))
            except (RPCError, WorkflowQueryFailedError) as err:  # one unreachable run does not sink the rest
                return BulkItemResult(**base, ok=False, error_code="unavailable", error=str(err))

    return list(await asyncio.gather(*(one(i) for i in items)))
