"""The care-gap closure program's guardrail rules: pure functions of typed inputs, run in workflow code.

Everything the outreach rules already check is theirs (:func:`guardrails.outreach_rules.evaluate_action`):
opt-out, deceased, the channel's contact point, the SMS length, marketing or billing words, TCPA contact hours
in the member's zone (a defer with ``defer_until``), adverse text (an MD), low confidence. This module adds
what a care-gap run needs on top, in front of them:

* a proposal that is not a care-gap action is blocked: only a reminder (``send_outreach``) and the two gap
  Task kinds (``gap-closure-scheduling``, ``pcp-gap-notification``). A care plan never reaches the outreach
  rules from here (they would read a readmission risk a gap run does not have);
* any action for a member whose coverage is not in force (or could not be determined) is blocked;
* a reminder that names a condition, a test or a measure is blocked: an SMS, a voicemail or a letter may be
  read by someone else, so it may only say that care is due (45 CFR 164.502(b), minimum necessary).

Blocks from both sets are reported together; the most severe decision wins.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import cast

from guardrails.actions import ProposedAction
from guardrails.facts import CareGapFacts, RunFacts
from guardrails.outreach_rules import evaluate_action
from guardrails.policy import GuardrailPolicy, Role
from guardrails.verdicts import GuardrailVerdict
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

__all__ = ["CLINICAL_TERMS", "GAP_TASK_KINDS", "check_gap_run", "clinical_terms_in", "evaluate_gap_action",
           "gap_terms"]

GAP_TASK_KINDS: frozenset[str] = frozenset({"gap-closure-scheduling", "pcp-gap-notification"})
CLINICAL_TERMS: tuple[str, ...] = (
    "diabetes", "a1c", "hba1c", "blood pressure", "hypertension", "mammogram", "mammography", "cancer",
    "screening", "medication",
)
"""Words a member-facing reminder may not contain (matched from a word's start, any case, so plurals count);
each open gap's measure title adds its own words longer than four letters (:func:`gap_terms`)."""
NAMES_CONDITION = "a reminder may not name a condition or test (someone else may read it)"


def gap_terms(facts: CareGapFacts) -> list[str]:
    """:data:`CLINICAL_TERMS` and the words (longer than 4 letters) of every open gap's measure title."""
    terms = list(CLINICAL_TERMS)
    for gap in facts.review.open_gaps:
        for word in re.findall(r"[a-z0-9]+", gap.title.lower()):
            if len(word) > 4 and word not in terms:
                terms.append(word)
    return terms


def clinical_terms_in(message: str, facts: CareGapFacts) -> list[str]:
    """The terms of :func:`gap_terms` the message contains, as words (any case; a word ending in more letters
    counts too, so "mammograms" and "screenings" are found)."""
    lowered = message.lower()
    return [t for t in gap_terms(facts) if re.search(rf"\b{re.escape(t)}", lowered)]


def _gap_blocks(action: ProposedAction, facts: CareGapFacts) -> list[str]:
    """The care-gap program's own block reasons for ``action`` (empty: nothing to add)."""
    blocks: list[str] = []
    args = action.arguments
    if isinstance(args, SendOutreachArgs):
        hits = clinical_terms_in(args.message, facts)
        if hits:
            blocks.append(f"{NAMES_CONDITION}: {', '.join(hits)}")
    elif not (isinstance(args, CreateTaskArgs) and args.kind in GAP_TASK_KINDS):
        what = f"a {args.kind} task" if isinstance(args, CreateTaskArgs) else f"a {args.tool} proposal"
        blocks.append(f"not a care-gap action: {what}; a care-gap run proposes a reminder "
                      f"(send_outreach) or a Task of kind {' or '.join(sorted(GAP_TASK_KINDS))}")
    coverage = _coverage_problem(facts)
    if coverage is not None:
        blocks.append(coverage)
    return blocks


def _coverage_problem(facts: CareGapFacts) -> str | None:
    """Why the member's coverage does not allow the run to act (an eligibility error, or not in force)."""
    eligibility = facts.eligibility
    if eligibility.outcome == "error":
        return f"eligibility could not be determined: {eligibility.reason or 'no reason given'}"
    if not eligibility.inforce:
        return f"member not eligible on {eligibility.on_date}: {eligibility.reason or 'coverage not in force'}"
    return None


def evaluate_gap_action(
    action: ProposedAction,
    facts: CareGapFacts,
    policy: GuardrailPolicy,
    *,
    now: datetime | None,
    approved_role: Role | None = None,
) -> GuardrailVerdict:
    """Judge one proposed care-gap action: the program's blocks, then the outreach rules for the rest.

    ``now=None`` skips the contact-hours rule (an edit re-guarded; its timing is judged when it executes).
    ``approved_role``: the role of a human who already approved this exact action; it satisfies approvals
    up to that role, never a block or a deferral.
    """
    blocks = _gap_blocks(action, facts)
    if isinstance(action.arguments, (SendOutreachArgs, CreateTaskArgs)):
        # The outreach rules read ``facts.member`` (messages) and ``facts.risk`` only for a care plan, which
        # never gets here (blocked above as not a care-gap action): the gap facts stand in for RunFacts.
        base = evaluate_action(action, cast(RunFacts, facts), policy, now=now, approved_role=approved_role)
    else:
        base = GuardrailVerdict(action_id=action.action_id, decision="allow", reasons=["within policy"],
                                policy_id=policy.policy_id, evaluated_at=now)
    if not blocks:
        return base
    earlier = [r for r in base.reasons if r != "within policy"]
    if base.decision != "block":
        # A deferral or an approval under a block is moot: the action will not run. Keep only the blocks.
        earlier = []
    return GuardrailVerdict(action_id=action.action_id, decision="block", reasons=[*blocks, *earlier],
                            policy_id=policy.policy_id, evaluated_at=now)


def check_gap_run(facts: CareGapFacts, policy: GuardrailPolicy) -> GuardrailVerdict | None:
    """A run-level ``block`` when nothing may be planned for the member (eligibility error or not in force).

    No open gap is not a block: the planner then proposes nothing.
    """
    coverage = _coverage_problem(facts)
    if coverage is None:
        return None
    return GuardrailVerdict(action_id="run", decision="block", reasons=[coverage], policy_id=policy.policy_id)
