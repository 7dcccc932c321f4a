"""PendingApproval items and decisions for ApprovalBook tests, routed as ``agents.outreach_graph._pending`` routes them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from guardrails.actions import ProposedAction
from guardrails.approvals import ApprovalDecision, PendingApproval, ReviewContext
from guardrails.outreach_rules import service_effect
from guardrails.policy import GuardrailPolicy, Role
from guardrails.routing import clock_for
from tests.deciding import TEST_SIGNER

__all__ = ["INITIATOR", "WORKFLOW_ID", "decide", "pending_item"]

WORKFLOW_ID = "outreach-mbr-000000000001-ep0001"
RUN_ID = ""
"""The books in these tests are made without a run id (pure tests: no Temporal)."""
INITIATOR = "cc.starter"
"""Who started the run in these tests: never allowed to decide its items."""

_CONTEXT = ReviewContext(
    lace=12, lace_components="L5 A3 C1 E3", risk_status="scored", charlson_categories=["chf"],
    plan_type="medicare_advantage", discharged_on=date(2024, 12, 6), discharge_disposition="home",
    length_of_stay_days=5, tcm_contact_due=None, age_years=74, preferred_channel="sms",
)


def pending_item(action: ProposedAction, *, role: Role, policy: GuardrailPolicy, now: datetime,
                 reasons: tuple[str, ...] = ("confidence below policy minimum",),
                 dual_signoff: bool | None = None) -> PendingApproval:
    """The item the guard node would open for ``action``: entry queue of ``role``, its clock at ``now``.

    ``dual_signoff`` defaults to what the policy says of the action's service effect.
    """
    routing = policy.approvals
    clock = clock_for(routing.entry_queue[role], role, policy, now)
    dual = service_effect(action) in routing.dual_signoff_effects if dual_signoff is None else dual_signoff
    return PendingApproval(
        approval_id=f"{action.action_id}.1", workflow_id=WORKFLOW_ID, action_id=action.action_id,
        tool=action.tool, arguments=action.arguments, digest=action.digest, rationale=action.rationale,
        evidence=action.evidence, confidence=action.confidence, signals=action.signals, reasons=list(reasons),
        required_role=clock.role, member_pseudonym="mbr-000000000001", requested_at=now,
        policy_id=policy.policy_id, queue=clock.queue, priority="routine", sla_deadline=clock.deadline,
        remind_at=clock.remind_at, dual_signoff=dual, context=_CONTEXT,
    )


def decide(item: PendingApproval, decision: str = "approve", *, approver: str = "rn.kim", role: Role = "rn",
           **fields: Any) -> ApprovalDecision:
    """A decision on ``item`` naming its current digest (override any field through ``fields``)."""
    values: dict[str, Any] = {"approval_id": item.approval_id, "digest": item.digest, "decision": decision,
                              "approver": approver, "role": role}
    if decision == "reject":
        values["reason"] = "an active plan already exists"
    unsigned = ApprovalDecision(**(values | fields))
    if "signature" in fields:
        return unsigned
    return TEST_SIGNER.sign(unsigned, WORKFLOW_ID, RUN_ID)
