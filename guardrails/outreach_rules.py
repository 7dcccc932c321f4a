"""The guardrail rules: pure functions of typed inputs, run in workflow code.

Order of severity: ``block`` > ``defer`` > ``require_approval`` > ``allow``.
An outreach outside TCPA hours is deferred before it is sent to approval, so
nobody is asked to approve a message that could not go out anyway.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel

from guardrails.actions import ProposedAction
from guardrails.adverse_content import SYSTEM_FAILURE_KIND, action_effect, content_effect
from guardrails.facts import RunFacts
from guardrails.policy import ROLE_RANK, GuardrailPolicy, Role, max_role
from guardrails.verdicts import Decision, GuardrailVerdict
from tools import determination
from tools.care_plan import DraftCarePlanArgs
from tools.deadlines import next_contact_time
from tools.outreach import SendOutreachArgs
from tools.tasks import ADVERSE_TASK_KINDS, CreateTaskArgs
from tools.writes import most_adverse
from tools.writes import ServiceEffect

__all__ = ["check_run", "declared_effect", "evaluate_action", "service_effect"]

_TIMED_CHANNELS = {"sms", "phone"}


def declared_effect(arguments: BaseModel) -> ServiceEffect:
    """What the action says it does: a task's ``service_effect`` (or its kind's), a determination's outcome;
    care plans and messages declare nothing, so ``none``."""
    if isinstance(arguments, CreateTaskArgs):
        return arguments.service_effect if arguments.service_effect != "none" else (
            ADVERSE_TASK_KINDS.get(arguments.kind, "none"))
    if isinstance(arguments, determination.IssueDeterminationArgs):
        return determination.service_effect(arguments)
    return "none"


def service_effect(action: ProposedAction) -> ServiceEffect:
    """The action's effect on the member's services: the most adverse of what it declares (its arguments'
    ``effect()``) and what its own text does (:func:`guardrails.adverse_content.action_effect`). A planner
    cannot make "terminate authorization" harmless by declaring ``none``."""
    return action_effect(action.arguments)


def evaluate_action(
    action: ProposedAction,
    facts: RunFacts,
    policy: GuardrailPolicy,
    *,
    now: datetime | None,
    approved_role: Role | None = None,
) -> GuardrailVerdict:
    """Judge one proposed action.

    ``now=None`` skips the contact-hours rule (used to re-guard an edit, whose
    timing is judged when it is executed). ``approved_role`` is the role of a
    human who already approved this exact action: it satisfies approvals up to
    that role, never a block or a deferral.
    """
    blocks: list[str] = []
    defers: list[str] = []
    approvals: list[tuple[Role, str]] = []
    defer_until: datetime | None = None
    args = action.arguments
    member = facts.member

    effect = service_effect(action)
    if effect != "none":
        approvals.append((policy.adverse_approver,
                          f"action {effect} a service: a clinician ({policy.adverse_approver}) must decide"))
    content = content_effect(args)
    if content.findings:
        said = "; ".join(f.describe() for f in content.findings[:4])
        approvals.append((policy.adverse_approver, f"its text is adverse whatever it declares: {said}"))
        declared = declared_effect(args)
        if most_adverse(declared, content.effect) != declared:
            # The declaration itself is evidence: a planner that calls this text harmless is not to be trusted on it.
            approvals.append((policy.adverse_approver, f"the declared effect ({declared}) contradicts the text "
                                                       f"({content.effect}): check what this action really does"))
    if isinstance(args, CreateTaskArgs) and args.kind == SYSTEM_FAILURE_KIND:
        blocks.append(f"a {SYSTEM_FAILURE_KIND} Task is written by careloom when a run cannot go on; a planner "
                      "may not propose one")

    if isinstance(args, SendOutreachArgs):
        if member.opted_out:
            blocks.append("member opted out of outreach")
        if member.deceased:
            blocks.append("member is recorded as deceased")
        if args.channel not in member.channels:
            blocks.append(f"no contact point for channel {args.channel}")
        if args.channel == "sms" and len(args.message) > policy.sms_max_chars:
            blocks.append(f"SMS text is {len(args.message)} characters; the limit is {policy.sms_max_chars}")
        lowered = args.message.lower()
        hits = [t for t in policy.marketing_terms if re.search(rf"\b{re.escape(t)}\b", lowered)]
        if hits:
            blocks.append(f"message contains marketing or billing content ({', '.join(hits)})")
        if now is not None and args.channel in _TIMED_CHANNELS and not blocks:
            opening = next_contact_time(now, member.time_zone, start=policy.contact_window_start,
                                        end=policy.contact_window_end)
            if opening is not None:
                defer_until = opening
                defers.append(
                    f"outside TCPA contact hours ({policy.contact_window_label} {member.time_zone}"
                    f"{f', {member.time_zone_basis}' if member.time_zone_source == 'plan_default' else ''}); "
                    f"next opening {opening.isoformat()}"
                )

    if isinstance(args, DraftCarePlanArgs):
        if facts.risk.status != "scored":
            approvals.append((policy.care_plan_approver,
                              f"readmission risk could not be scored ({', '.join(facts.risk.missing)})"))
        elif (facts.lace or 0) >= policy.high_risk_lace:
            approvals.append((policy.care_plan_approver,
                              f"high readmission risk: LACE {facts.lace} >= {policy.high_risk_lace}"))

    # A doubtful plan (low confidence, or the planner itself asks) goes to the reviewer for its kind.
    reviewer = (policy.low_confidence_clinical_approver if isinstance(args, DraftCarePlanArgs)
                else policy.low_confidence_approver)
    if action.confidence < policy.min_confidence:
        approvals.append((reviewer, f"confidence {action.confidence:.2f} below {policy.min_confidence:.2f}"))
    approvals.extend((reviewer, f"planner asks for review: {reason}") for reason in action.review_reasons)

    required = max_role([role for role, _ in approvals])
    if approved_role is not None and required is not None and ROLE_RANK[approved_role] >= ROLE_RANK[required]:
        approval_reasons = [f"approved by {approved_role}: {reason}" for _, reason in approvals]
        approvals_open = False
    else:
        approval_reasons = [reason for _, reason in approvals]
        approvals_open = bool(approvals)

    decision: Decision = "allow"
    if blocks:
        decision = "block"
    elif defers:
        decision = "defer"
    elif approvals_open:
        decision = "require_approval"
    reasons = [*blocks, *defers, *approval_reasons] or ["within policy"]
    return GuardrailVerdict(
        action_id=action.action_id,
        decision=decision,
        reasons=reasons,
        required_role=required if decision == "require_approval" else None,
        defer_until=defer_until if decision == "defer" else None,
        policy_id=policy.policy_id,
        evaluated_at=now,
    )


def check_run(facts: RunFacts, policy: GuardrailPolicy) -> GuardrailVerdict | None:
    """A run-level ``block`` verdict when outreach must not be planned at all, else None."""
    reasons: list[str] = []
    if facts.clinical.stay.discharged_at is None:
        reasons.append("the stay has no discharge yet; outreach starts after discharge")
    elif facts.eligibility.outcome == "error":
        reasons.append(f"eligibility could not be determined: {facts.eligibility.reason}")
    elif not facts.eligibility.inforce:
        reasons.append(f"member not eligible on {facts.eligibility.on_date}: {facts.eligibility.reason}")
    if not reasons:
        return None
    return GuardrailVerdict(action_id="run", decision="block", reasons=reasons, policy_id=policy.policy_id)

