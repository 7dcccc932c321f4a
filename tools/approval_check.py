"""The worker's own check that an approved write may run, in the activity that performs it.

The run's input and history are written by whoever can reach Temporal, so the ``decide`` validator is only
the early refusal. Before a write tool writes anything it verifies, against the keys this worker holds, that
the signed decisions it was handed approve exactly these arguments, for this workflow id and run, by the
people and roles the action needs (:func:`runtime.signing.verify_approval`). A refusal is a non-retryable
``ApprovalNotVerified`` error: the action fails unwritten and the run hands it to a person.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from agents.actions import action_digest
from agents.approvals import ApprovalDecision
from guardrails.adverse_content import content_effect, most_adverse
from guardrails.policy import DecisionKey, ServiceEffect
from runtime.errors import DecisionRefused
from runtime.signing import verify_approval
from tools.writes import SignedApproval

__all__ = ["APPROVAL_NOT_VERIFIED", "ApprovedWrite", "verified_approvers"]

APPROVAL_NOT_VERIFIED = "ApprovalNotVerified"


class ApprovedWrite(Protocol):
    """What a write tool's input carries about its approval."""

    arguments: BaseModel
    approved_by: str | None
    approval: SignedApproval | None


def verified_approvers(data: ApprovedWrite, *, effect: ServiceEffect, keys: tuple[DecisionKey, ...],
                       tool: str) -> str | None:
    """The approvers the verified proof names (None: no human, allowed for a non-adverse action only).

    Raises ApplicationError(ApprovalNotVerified, non-retryable) naming why, before anything is written."""
    info = activity.info()
    # What the text says counts, whatever the caller computed from the declaration (issue 21): the same
    # classifier as the guardrails, so a forged run cannot write "terminate authorization" without an MD.
    effect = most_adverse(effect, content_effect(data.arguments).effect)
    try:
        decisions = [ApprovalDecision.model_validate(d) for d in data.approval.decisions] if data.approval else []
        return verify_approval(data.approval.approval_id if data.approval else None, decisions, arguments_digest=action_digest(data.arguments), effect=effect,
                               approved_by=data.approved_by, workflow_id=info.workflow_id or "",
                               run_id=info.workflow_run_id or "", keys=keys)
    except DecisionRefused as refused:
        activity.logger.warning("write refused: approval not verified", extra={"tool": tool, "code": refused.code})
        raise ApplicationError(f"{tool} refused: {refused}", type=APPROVAL_NOT_VERIFIED, non_retryable=True) from None
    except ValueError as err:  # a decision that is not one (pydantic's ValidationError is a ValueError)
        activity.logger.warning("write refused: malformed approval", extra={"tool": tool})
        raise ApplicationError(f"{tool} refused: the approval carries a malformed decision "
                               f"({err.__class__.__name__})", type=APPROVAL_NOT_VERIFIED, non_retryable=True) from None
