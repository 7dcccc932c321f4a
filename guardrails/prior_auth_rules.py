"""Guardrails for prior-authorization determinations: pure functions, run in workflow code.

No automated adverse determinations (CMS-4201-F, 42 CFR 422.101(c); CA SB
1120): a denial, partial approval or pend is a recommendation that an MD
decides — deny and partial with a second reviewer (the routing's dual
sign-off) — whatever the confidence. Only an approval whose every criterion is
met with cited evidence runs alone, and only where both the run's policy and
the service's medical policy allow it. A determination that cites a criterion
the medical policy does not have, or denies on a criterion the notes show as
met, goes to a physician with the reason.
"""

from __future__ import annotations

from guardrails.actions import ProposedAction
from guardrails.adverse_content import action_effect
from guardrails.facts import PriorAuthFacts
from guardrails.policy import ROLE_RANK, Role, max_role
from guardrails.prior_auth_policy import PriorAuthPolicy
from guardrails.verdicts import GuardrailVerdict
from tools.determination import IssueDeterminationArgs

__all__ = ["evaluate_determination"]


def _citation_problems(args: IssueDeterminationArgs, facts: PriorAuthFacts) -> list[str]:
    known = facts.review.criterion_ids()
    met = {c.criterion_id for s in facts.review.services for c in s.criteria if c.status == "met"}
    problems = [f"cites criterion {c!r}, which the medical policy does not have"
                for c in [*args.criteria_cited, *args.requested_documentation] if c not in known]
    if args.outcome in ("deny", "partial"):
        problems += [f"denies on criterion {c!r}, which the notes document as met"
                     for c in args.criteria_cited if c in met]
    requested = {(s.sequence, s.code) for s in facts.review.services}
    decided = {(i.sequence, i.code) for i in args.items}
    if decided != requested:
        problems.append(f"decides lines {sorted(decided)} but the request has {sorted(requested)}")
    return problems


def evaluate_determination(action: ProposedAction, facts: PriorAuthFacts, policy: PriorAuthPolicy, *,
                           approved_role: Role | None = None, appeal: bool = False) -> GuardrailVerdict:
    """Judge one proposed action of a prior-authorization run.

    ``approved_role`` is the role of the human who approved this exact action; it satisfies approvals up
    to that role, never a block.
    """
    args = action.arguments
    if not isinstance(args, IssueDeterminationArgs):
        # Only the follow-up Task for an expired approval is written besides determinations (careloom quotes its
        # reason without adverse words). Anything else, e.g. a Task in a forged recommender result, is judged by
        # what it does: an adverse one goes to a physician as a determination would.
        effect = action_effect(args)
        if effect != "none" and not (approved_role is not None
                                     and ROLE_RANK[approved_role] >= ROLE_RANK[policy.adverse_approver]):
            return GuardrailVerdict(action_id=action.action_id, decision="require_approval",
                                    required_role=policy.adverse_approver, policy_id=policy.policy_id,
                                    reasons=[f"a {args.tool} that {effect} the member's services: a physician "
                                             f"({policy.adverse_approver}) decides"])
        return GuardrailVerdict(action_id=action.action_id, decision="allow", reasons=["within policy"],
                                policy_id=policy.policy_id)
    approvals: list[tuple[Role, str]] = []
    if appeal:
        approvals.append((policy.adverse_approver, "a reconsideration of an adverse determination: a physician who "
                                                   "took no part in it decides, whatever the outcome"))
    effect = action_effect(args)
    if effect != "none":
        approvals.append((policy.adverse_approver,
                          f"a {args.outcome} {effect} the member's services: a physician ({policy.adverse_approver}) "
                          "decides, the agent only recommends"))
    approvals += [(policy.adverse_approver, f"the determination {p}") for p in _citation_problems(args, facts)]
    if args.outcome == "approve":
        if not facts.eligibility.inforce:
            approvals.append((policy.adverse_approver, "approval for a member whose coverage is not in force"))
        unmet = [c.criterion_id for s in facts.review.services for c in s.criteria if c.status != "met"]
        if unmet:
            approvals.append((policy.approval_reviewer, f"approval with criteria not met: {', '.join(unmet)}"))
        if not policy.auto_approve:
            approvals.append((policy.approval_reviewer, "the plan's policy sends every approval to a reviewer"))
        manual = [s.policy_id for s in facts.review.services if not s.auto_approve_when_met]
        if manual:
            approvals.append((policy.approval_reviewer,
                              f"medical policy {', '.join(manual)} allows no automatic approval"))
    if not facts.review.fully_read:
        # A note read only in part (its time budget ran out) may hold evidence either way: a person reads it.
        approvals.append((policy.approval_reviewer,
                          f"{facts.review.notes_incomplete} clinical note(s) not fully read within the time budget:"
                          " the unread text may hold evidence for or against; read the notes before deciding"))
    if action.confidence < policy.min_confidence:
        approvals.append((policy.approval_reviewer,
                          f"confidence {action.confidence:.2f} below {policy.min_confidence:.2f}"))
    approvals += [(policy.approval_reviewer, f"planner asks for review: {r}") for r in action.review_reasons]

    required = max_role([role for role, _ in approvals])
    if required is None:
        return GuardrailVerdict(action_id=action.action_id, decision="allow", policy_id=policy.policy_id,
                                reasons=["approval with every criterion met and cited; automatic approval allowed"])
    if approved_role is not None and ROLE_RANK[approved_role] >= ROLE_RANK[required]:
        return GuardrailVerdict(action_id=action.action_id, decision="allow", policy_id=policy.policy_id,
                                reasons=[f"approved by {approved_role}: {reason}" for _, reason in approvals])
    return GuardrailVerdict(action_id=action.action_id, decision="require_approval", required_role=required,
                            reasons=[reason for _, reason in approvals], policy_id=policy.policy_id)
