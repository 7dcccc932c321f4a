"""Plan completeness: the actions the policy requires for a run's facts, checked against any planner's plan.

A model's plan is judged action by action by :mod:`guardrails.outreach_rules`, but nothing compared the plan as a whole
with what the policy mandates: a schema-valid plan that left out the check-in and the care plan of a LACE 11
member and set the TCM task to ``routine`` was accepted (issue 21.2). The mandates, from the facts:

* a living member: the ``tcm-interactive-contact`` Task (TCM interactive contact within 2 business days),
  ``urgent`` or higher when the readmission risk is high (LACE >= the policy's cut-off, or not scorable);
* a living member with a preferred channel: a check-in message on a channel the member has, that the outreach
  guardrails would let out (one they block - an SMS over the limit, a marketing term - reaches nobody, so it
  does not count: the reference check-in is restored beside it);
* high readmission risk: the draft care plan (which the rules send to an RN);
* a deceased member: the ``close-care-episode`` Task (an MD closes the episode).

The offline rules (``agents/offline_planner.py``) are the reference plan, so a missing action is restored
from them, word for word, with the reason in its rationale; a TCM task below the required priority gets the
required priority back, with the reason. Either way the run's verdicts carry one ``plan`` verdict listing what
was restored. Pure and deterministic (workflow code): same plan and facts in, same plan out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from guardrails.actions import ProposedAction
from guardrails.facts import RunFacts
from guardrails.outreach_rules import evaluate_action
from guardrails.policy import GuardrailPolicy
from guardrails.verdicts import GuardrailVerdict
from tools.care_plan import DraftCarePlanArgs
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["PLAN_VERDICT_ID", "PlanCompleteness", "complete_plan"]

PLAN_VERDICT_ID = "plan"
"""The action id of the plan-level verdict (as ``run`` is for the run-level one)."""
_PRIORITY_RANK = {"routine": 0, "urgent": 1, "asap": 2, "stat": 3}
_RATIONALE_MAX = 500


@dataclass(frozen=True)
class PlanCompleteness:
    """The plan with every mandated action present, and what had to change (empty: the plan was complete)."""

    proposals: list[ProposedAction]
    changes: list[str] = field(default_factory=list)

    def verdict(self, policy_id: str) -> GuardrailVerdict | None:
        """The plan-level verdict naming each change, or None when the plan was complete."""
        if not self.changes:
            return None
        return GuardrailVerdict(action_id=PLAN_VERDICT_ID, decision="allow", policy_id=policy_id,
                                reasons=[f"plan completed from the policy: {c}" for c in self.changes])


def _is_tcm(action: ProposedAction) -> bool:
    return isinstance(action.arguments, CreateTaskArgs) and action.arguments.kind == "tcm-interactive-contact"


def _is_close(action: ProposedAction) -> bool:
    return isinstance(action.arguments, CreateTaskArgs) and action.arguments.kind == "close-care-episode"


def complete_plan(proposals: list[ProposedAction], reference: list[ProposedAction], facts: RunFacts, *,
                  high_risk_lace: int, planner: str, policy: GuardrailPolicy | None = None) -> PlanCompleteness:
    """``proposals`` with the mandated actions restored from ``reference`` (the offline rules' plan for the same
    facts) and a TCM task's required priority restored; ``changes`` says what and why. ``policy`` (default the
    default policy) judges whether a check-in would be blocked."""
    policy = policy or GuardrailPolicy()
    member = facts.member
    lace = facts.lace
    high_risk = facts.risk.status != "scored" or (lace or 0) >= high_risk_lace
    risk = (f"LACE {lace} >= {high_risk_lace}" if facts.risk.status == "scored"
            else "readmission risk not scorable")
    out = list(proposals)
    changes: list[str] = []
    taken = {p.action_id for p in proposals}

    def restore(matches: Callable[[ProposedAction], bool], required: str, had: str = "none") -> None:
        source = next((r for r in reference if matches(r)), None)
        if source is None:  # the reference rules do not propose it for these facts: nothing to restore from
            return
        action_id = _free_id(f"{source.action_id}-restored", taken)
        taken.add(action_id)
        why = f"{required}; the {planner} plan had {had}"
        out.append(source.model_copy(update={
            "action_id": action_id,
            "rationale": f"Restored from the policy's rules: {why}. {source.rationale}"[:_RATIONALE_MAX]}))
        changes.append(f"restored {action_id} ({required})")

    if member.deceased:
        if not any(_is_close(p) for p in out):
            restore(_is_close, "a deceased member's episode is closed by a clinician (close-care-episode Task)")
        return PlanCompleteness(out, changes)

    tcm = [i for i, p in enumerate(out) if _is_tcm(p)]
    if not tcm:
        restore(_is_tcm, "every discharge needs the TCM interactive-contact Task")
    elif high_risk:
        for index in tcm:
            action = out[index]
            args = action.arguments
            if isinstance(args, CreateTaskArgs) and _PRIORITY_RANK[args.priority] < _PRIORITY_RANK["urgent"]:
                required = f"priority urgent, not {args.priority}, at {risk}"
                out[index] = action.model_copy(update={
                    "arguments": args.model_copy(update={"priority": "urgent"}),
                    "rationale": (f"Priority restored to urgent by the policy ({risk}); the {planner} plan said "
                                  f"{args.priority}. {action.rationale}")[:_RATIONALE_MAX]})
                changes.append(f"{action.action_id}: {required}")

    def sendable(action: ProposedAction) -> bool:
        # The same checks as the guardrails (contact hours aside: a deferred check-in still goes out, later).
        return (isinstance(action.arguments, SendOutreachArgs)
                and evaluate_action(action, facts, policy, now=None).decision != "block")

    check_ins = [p for p in out if isinstance(p.arguments, SendOutreachArgs)]
    # Restored only if the reference's own check-in would go out (an opted-out member gets none either way).
    if member.preferred_channel is not None and not any(sendable(p) for p in check_ins):
        had = (f"only {', '.join(p.action_id for p in check_ins)}, which the guardrails would block" if check_ins
               else "none")
        restore(sendable, f"a check-in on the member's preferred channel ({member.preferred_channel})", had)
    if high_risk and not any(isinstance(p.arguments, DraftCarePlanArgs) for p in out):
        restore(lambda r: isinstance(r.arguments, DraftCarePlanArgs),
                f"a care plan for a clinician at high readmission risk ({risk})")
    return PlanCompleteness(out, changes)


def _free_id(wanted: str, taken: set[str]) -> str:
    candidate, n = wanted[:40], 2
    while candidate in taken:
        suffix = f"-{n}"
        candidate, n = wanted[:40 - len(suffix)] + suffix, n + 1
    return candidate
