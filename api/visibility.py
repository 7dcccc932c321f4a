"""Least privilege in the API and inbox: an approver sees the items and runs of the roles they may act for.

An item is visible to a role at least as senior as the one it needs (an RN sees care-coordinator and RN
items, not MD ones). A run's details are visible when it routed nothing to a human, or routed something
to a role the caller may act for. Anything else answers exactly as an unknown id does (404), so ids are
never confirmed; and every read, shown or not, is a row in the access log (``store/access_log.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from temporalio.client import Client

from api.decisions import NOT_FOUND
from api.identity import Identity
from api.submitters import refuse_own_request
from guardrails.approvals import PendingApproval
from guardrails.policy import ROLE_RANK
from runtime.errors import DecisionRefused
from workflows.inbox import get_approval

__all__ = ["may_act", "may_decide", "may_decide_listed", "record_access", "run_visible", "visible_approval", "visible_run_status"]


def may_act(who: Identity, required_role: str) -> bool:
    return ROLE_RANK[who.role] >= ROLE_RANK[required_role]


def record_access(request: Request, who: Identity, action: str, outcome: str, *, workflow_id: str | None = None,
                  approval_id: str | None = None) -> None:
    request.app.state.access_log.record(user_id=who.user_id, role=who.role, action=action, outcome=outcome,
                                        workflow_id=workflow_id, approval_id=approval_id)


async def visible_approval(request: Request, client: Client, who: Identity, workflow_id: str, approval_id: str,
                           *, action: str) -> PendingApproval:
    """The item if the caller may act on it; DecisionRefused(not_found), the unknown-item answer, if not."""
    try:
        item = await get_approval(client, workflow_id, approval_id)
        if not may_act(who, item.required_role):
            raise DecisionRefused("not_found", NOT_FOUND)
    except DecisionRefused:
        record_access(request, who, action, "not_found", workflow_id=workflow_id, approval_id=approval_id)
        raise
    record_access(request, who, action, "shown", workflow_id=workflow_id, approval_id=approval_id)
    return item


def may_decide_listed(request: Request, who: Identity, workflow_id: str, approval_id: str, required_role: str, *,
                      action: str) -> None:
    """:func:`may_decide` for an item the approvals projection lists, with the role it names (no run query)."""
    refuse_own_request(request, who, workflow_id, approval_id, action=action)  # 403 for a request's submitter
    if not may_act(who, required_role):
        record_access(request, who, action, "not_found", workflow_id=workflow_id, approval_id=approval_id)
        raise DecisionRefused("not_found", NOT_FOUND)
    record_access(request, who, action, "decided", workflow_id=workflow_id, approval_id=approval_id)


async def may_decide(request: Request, client: Client, who: Identity, workflow_id: str, approval_id: str, *,
                     action: str) -> None:
    """Before a decision: 404 (as for an unknown item) when the item is pending for a more senior role.

    An item that is not pending (unknown, or already decided) goes on to the run, which answers an identical
    repeat with its first result, a different decision with 409 and an unknown item with 404.
    """
    refuse_own_request(request, who, workflow_id, approval_id, action=action)  # 403 for a request's submitter
    try:
        item = await get_approval(client, workflow_id, approval_id)
    except DecisionRefused:
        record_access(request, who, action, "not_pending", workflow_id=workflow_id, approval_id=approval_id)
        return
    if not may_act(who, item.required_role):
        record_access(request, who, action, "not_found", workflow_id=workflow_id, approval_id=approval_id)
        raise DecisionRefused("not_found", NOT_FOUND)
    record_access(request, who, action, "decided", workflow_id=workflow_id, approval_id=approval_id)


def run_visible(status: Any, who: Identity) -> bool:  # noqa: ANN401 - any program's status
    roles = {v.required_role for v in status.verdicts if v.decision == "require_approval" and v.required_role}
    roles |= {p.required_role for p in status.pending_approvals}
    return not roles or any(may_act(who, role) for role in roles)


async def visible_run_status(request: Request, client: Client, who: Identity, workflow_id: str, query: Any,
                             *, action: str) -> Any:  # noqa: ANN401
    """A run's ``status`` if the caller may see it, else the not-found refusal every hidden or unknown item and
    run gets (404, :data:`api.decisions.NOT_FOUND`); recorded either way."""
    try:
        status = await client.get_workflow_handle(workflow_id).query(query)
    except Exception:  # noqa: BLE001 - unknown or unreachable run: the same answer as a hidden one
        status = None
    if status is None or not run_visible(status, who):
        record_access(request, who, action, "not_found", workflow_id=workflow_id)
        raise DecisionRefused("not_found", NOT_FOUND)
    record_access(request, who, action, "shown", workflow_id=workflow_id)
    return status
