"""What prior-authorization run tests share: the pending approval they wait for and the decision they send."""

from __future__ import annotations

from temporalio.client import WorkflowHandle

from guardrails.approvals import ApprovalDecision, PendingApproval
from tests.conftest import wait_for_status
from workflows.prior_auth import PriorAuthWorkflow

__all__ = ["decision", "pending"]


async def pending(handle: WorkflowHandle, **match: object) -> PendingApproval:
    """The run's first pending approval whose fields equal ``match``, once there is one."""
    status = await wait_for_status(handle, lambda s: any(
        all(getattr(p, k) == v for k, v in match.items()) for p in s.pending_approvals), timeout=30,
        query=PriorAuthWorkflow.status)
    return next(p for p in status.pending_approvals if all(getattr(p, k) == v for k, v in match.items()))


def decision(item: PendingApproval, kind: str = "approve", *, approver: str, role: str,
             **extra: object) -> ApprovalDecision:
    return ApprovalDecision(approval_id=item.approval_id, digest=item.digest, decision=kind, approver=approver,
                            role=role, **extra)
