"""The worker's own check that an approved write may run, in the activity that performs it.

The run's input and history are written by whoever can reach Temporal, so the ``decide`` validator is only
the early refusal. Before a write tool writes anything it asks its :class:`tools.writes.WriteGate` — on a
worker, :class:`ApprovalCheck` — to verify, against the keys this worker holds, that the signed decisions it
was handed approve exactly these arguments, for this workflow id and run, by the people and roles the action
needs (:func:`guardrails.signing.verify_approval`). A refusal is a non-retryable ``ApprovalNotVerified``
error: the action fails unwritten and the run hands it to a person.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from guardrails.actions import action_digest
from guardrails.adverse_content import action_effect
from guardrails.approvals import ApprovalDecision
from guardrails.policy import DecisionKey
from guardrails.signing import verify_approval
from runtime.errors import DecisionRefused
from tools.writes import ApprovedWrite, ServiceEffect, most_adverse

__all__ = ["APPROVAL_NOT_VERIFIED", "ApprovalCheck"]

APPROVAL_NOT_VERIFIED = "ApprovalNotVerified"


class ApprovalCheck:
    """The :class:`tools.writes.WriteGate` of a worker: approvals verified against the worker's own keys."""

    def __init__(self, keys: tuple[DecisionKey, ...]) -> None:
        self._keys = keys  # the worker's decision keys (configuration, never a run's input)

    def approvers(self, data: ApprovedWrite, *, effect: ServiceEffect, tool: str) -> str | None:
        """The approvers the verified proof names (None: no human, allowed for a non-adverse action only).

        Raises ApplicationError(ApprovalNotVerified, non-retryable) naming why, before anything is written."""
        info = activity.info()
        # What the text says counts, whatever the caller computed from the declaration (issue 21): the same
        # classifier as the guardrails, so a forged run cannot write "terminate authorization" without an MD.
        effect = most_adverse(effect, action_effect(data.arguments))
        try:
            decisions = [ApprovalDecision.model_validate(d) for d in data.approval.decisions] if data.approval else []
            return verify_approval(data.approval.approval_id if data.approval else None, decisions,
                                   arguments_digest=action_digest(data.arguments), effect=effect,
                                   approved_by=data.approved_by, workflow_id=info.workflow_id or "",
                                   run_id=info.workflow_run_id or "", keys=self._keys)
        except DecisionRefused as refused:
            activity.logger.warning("write refused: approval not verified", extra={"tool": tool, "code": refused.code})
            raise ApplicationError(f"{tool} refused: {refused}", type=APPROVAL_NOT_VERIFIED,
                                   non_retryable=True) from None
        except ValueError as err:  # a decision that is not one (pydantic's ValidationError is a ValueError)
            activity.logger.warning("write refused: malformed approval", extra={"tool": tool})
            raise ApplicationError(f"{tool} refused: the approval carries a malformed decision "
                                   f"({err.__class__.__name__})", type=APPROVAL_NOT_VERIFIED,
                                   non_retryable=True) from None
