"""Approval requests and decisions, bound to the exact action and the approver.

:func:`check_decision` is what the workflow's ``decide`` update validator
runs: it refuses unknown approvals, stale digests, conflicting repeats,
self-approval, insufficient roles and edits that fail validation or the
guardrails, before anything reaches history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from agents.actions import ActionArguments, ConfidenceSignal, ProposedAction, action_digest
from agents.facts import RunFacts
from guardrails.policy import ROLE_RANK, GuardrailPolicy, Role
from guardrails.rules import evaluate_action

__all__ = ["ApprovalDecision", "DecisionRefused", "DecisionResult", "PendingApproval", "ReceivedDecision", "approved_digest", "check_decision"]


class PendingApproval(BaseModel):
    """An action waiting for a human, exactly as the approver will see it."""

    approval_id: str
    workflow_id: str
    action_id: str
    tool: str
    arguments: ActionArguments
    digest: str = Field(description="sha256 of the canonical arguments; a decision must name it.")
    rationale: str
    evidence: list[str]
    confidence: float
    signals: list[ConfidenceSignal]
    reasons: list[str] = Field(description="Why the guardrails asked for a human.")
    required_role: Role
    member_pseudonym: str
    requested_at: datetime
    policy_id: str


class ApprovalDecision(BaseModel):
    """A supervisor's decision on one pending approval (the ``decide`` update's input)."""

    approval_id: str
    digest: str = Field(description="Digest of the action the approver saw.")
    decision: Literal["approve", "reject", "edit"]
    approver: str = Field(min_length=1, max_length=120, description="Approver's user id.")
    role: Role
    reason: str | None = Field(default=None, max_length=500)
    arguments: ActionArguments | None = Field(default=None, description="New arguments (edit only).")

    @model_validator(mode="after")
    def _complete(self) -> "ApprovalDecision":
        if self.decision == "reject" and not (self.reason and self.reason.strip()):
            raise ValueError("a rejection needs a reason")
        if self.decision == "edit" and self.arguments is None:
            raise ValueError("an edit needs the new arguments")
        if self.decision != "edit" and self.arguments is not None:
            raise ValueError("arguments are only accepted with decision=edit")
        return self


class DecisionResult(BaseModel):
    """What a decision did; an identical repeat returns the first result."""

    approval_id: str
    action_id: str
    decision: Literal["approve", "reject", "edit"]
    approver: str
    role: Role
    reason: str | None
    decided_at: datetime
    approved_digest: str | None = Field(description="Digest of the action that will run (edits: the new one).")


class ReceivedDecision(BaseModel):
    """An accepted decision waiting to be applied by the agent on its next step."""

    decision: ApprovalDecision
    result: DecisionResult
    approval: PendingApproval


class DecisionRefused(ValueError):
    """The decision cannot be accepted; the message names the fix."""


def check_decision(
    decision: ApprovalDecision,
    *,
    pending: dict[str, PendingApproval],
    decided: dict[str, tuple[ApprovalDecision, DecisionResult]],
    actions: dict[str, ProposedAction],
    facts: RunFacts | None,
    policy: GuardrailPolicy,
    initiated_by: str,
) -> None:
    """Raise :class:`DecisionRefused` unless the decision may be applied (or is an identical repeat)."""
    if decision.approval_id in decided:
        first, _ = decided[decision.approval_id]
        if first == decision:
            return
        raise DecisionRefused(
            f"approval {decision.approval_id} was already decided ({first.decision} by {first.approver}); "
            "a different decision is refused"
        )
    item = pending.get(decision.approval_id)
    if item is None:
        raise DecisionRefused(
            f"unknown approval {decision.approval_id!r}; list pending approvals with `careloom approvals list`"
        )
    if decision.digest != item.digest:
        raise DecisionRefused(
            f"stale digest for approval {decision.approval_id}: the action is now {item.digest[:12]}, "
            f"you saw {decision.digest[:12]}; reload it and decide again"
        )
    if decision.approver == initiated_by or decision.approver == "system":
        raise DecisionRefused(f"{decision.approver} initiated this run and may not approve its actions")
    if ROLE_RANK[decision.role] < ROLE_RANK[item.required_role]:
        raise DecisionRefused(
            f"approval {decision.approval_id} needs role {item.required_role}; {decision.approver} has {decision.role}"
        )
    if decision.decision != "edit":
        return
    edited_args = decision.arguments
    if edited_args is None or edited_args.tool != item.tool:
        raise DecisionRefused(f"an edit must keep the tool {item.tool}")
    if facts is None:
        raise DecisionRefused("the run has no facts yet; an edit cannot be checked")
    edited = actions[item.action_id].model_copy(update={"arguments": edited_args})
    verdict = evaluate_action(edited, facts, policy, now=None, approved_role=decision.role)
    if verdict.decision == "block":
        raise DecisionRefused(f"the edited action would be blocked: {'; '.join(verdict.reasons)}")
    if verdict.decision == "require_approval":
        raise DecisionRefused(
            f"the edited action needs role {verdict.required_role}: {'; '.join(verdict.reasons)}"
        )


def approved_digest(decision: ApprovalDecision, item: PendingApproval) -> str | None:
    if decision.decision == "reject":
        return None
    if decision.decision == "edit" and decision.arguments is not None:
        return action_digest(decision.arguments)
    return item.digest
