"""guardrails.plan_completeness on typed facts: any plan against what the policy mandates (offline rules as reference)."""

from __future__ import annotations

from agents.offline_planner import OfflinePlanner
from agents.planner import PlannerInput
from guardrails.plan_completeness import complete_plan
from guardrails.policy import GuardrailPolicy
from tests.guardrails.run_facts import make_facts, scored_risk
from tools.care_plan import DraftCarePlanArgs
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

HIGH = scored_risk(los=4, ed=4)  # LACE 11


def _reference(facts):  # noqa: ANN001, ANN202
    return OfflinePlanner().propose(PlannerInput(workflow_id="wf", facts=facts, high_risk_lace=10))


def _complete(proposals, facts):  # noqa: ANN001, ANN202
    return complete_plan(proposals, _reference(facts), facts, high_risk_lace=10, planner="model:m")


def test_the_offline_plan_is_complete_for_every_kind_of_facts() -> None:
    """The reference is complete by construction: nothing changes (so offline runs' histories are unchanged)."""
    for facts in (make_facts(), make_facts(risk=HIGH), make_facts(deceased=True), make_facts(channels=()),
                  make_facts(opted_out=True),  # its check-in is blocked, and so would a restored one be
                  make_facts(risk=scored_risk(los=1, acute=False))):
        plan = _reference(facts)
        completed = _complete(plan, facts)
        assert (plan, []) == (completed.proposals, completed.changes)
        assert completed.verdict("p#1") is None


def test_a_routine_tcm_task_alone_at_lace_11_is_raised_and_completed() -> None:
    """The issue's plan: priority restored to urgent, the check-in and the RN care plan restored from the rules."""
    facts = make_facts(risk=HIGH)
    task = next(p for p in _reference(facts) if isinstance(p.arguments, CreateTaskArgs))
    model_task = task.model_copy(update={"action_id": "a1-create-task", "rationale": "TCM contact.",
                                         "arguments": task.arguments.model_copy(update={"priority": "routine"})})
    completed = _complete([model_task], facts)

    assert ["a1-create-task", "a2-check-in-restored", "a3-care-plan-restored"] == [
        p.action_id for p in completed.proposals]
    assert "urgent" == completed.proposals[0].arguments.priority
    assert completed.proposals[0].rationale.startswith(
        "Priority restored to urgent by the policy (LACE 11 >= 10); the model:m plan said routine. TCM contact.")
    assert isinstance(completed.proposals[1].arguments, SendOutreachArgs)
    assert isinstance(completed.proposals[2].arguments, DraftCarePlanArgs)
    verdict = completed.verdict("p#1")
    assert ("plan", "allow", 3) == (verdict.action_id, verdict.decision, len(verdict.reasons))


def test_a_plan_without_the_tcm_task_gets_it_back() -> None:
    """Every discharge needs the TCM interactive-contact Task, whatever else the plan has."""
    facts = make_facts()
    plan = [p for p in _reference(facts) if not isinstance(p.arguments, CreateTaskArgs)]
    completed = _complete(plan, facts)

    assert ["restored a1-tcm-task-restored (every discharge needs the TCM interactive-contact Task)"] == \
        completed.changes


def test_a_check_in_on_a_channel_the_member_lacks_does_not_count() -> None:
    """A message the guardrails will block (no such contact point) leaves the member without a check-in."""
    facts = make_facts(channels=("sms",))
    plan = [p for p in _reference(facts) if not isinstance(p.arguments, SendOutreachArgs)]
    email = SendOutreachArgs(channel="email", template="post-discharge-check-in", message="Checking in.")
    other = plan[0].model_copy(update={"action_id": "a9-email", "arguments": email})
    completed = _complete([*plan, other], facts)

    assert ["a1-tcm-task", "a3-care-plan", "a9-email", "a2-check-in-restored"] == [
        p.action_id for p in completed.proposals]


def test_a_deceased_members_plan_gets_the_close_episode_task() -> None:
    """The episode of a deceased member is closed by a clinician; no other mandate applies."""
    facts = make_facts(deceased=True)
    completed = _complete([], facts)

    assert ["a1-close-episode-restored"] == [p.action_id for p in completed.proposals]


def test_a_restored_id_never_collides_with_the_plans_own() -> None:
    """Ids stay unique in the run (the plan node refuses a plan with an id twice)."""
    facts = make_facts(risk=HIGH)
    reference = _reference(facts)
    taken = [p.model_copy(update={"action_id": "a3-care-plan-restored", "arguments": reference[0].arguments})
             for p in reference[:1]]
    completed = _complete(taken, facts)

    ids = [p.action_id for p in completed.proposals]
    assert len(ids) == len(set(ids)) and "a3-care-plan-restored-2" in ids


def _with_check_in(facts, message: str, channel: str = "sms"):  # noqa: ANN001, ANN202
    """The reference plan with its check-in rewritten as a model might write it."""
    reference = _reference(facts)
    check_in = next(p for p in reference if isinstance(p.arguments, SendOutreachArgs))
    model = check_in.model_copy(update={"action_id": "a2-send-outreach", "arguments": SendOutreachArgs(
        channel=channel, template="post-discharge-check-in", message=message)})
    return [model if p is check_in else p for p in reference]


def test_a_check_in_with_a_marketing_term_does_not_count_and_the_reference_is_restored() -> None:
    """Review of issue 21: a check-in the guardrails block (marketing content) counted as the mandated one, so the
    member got none. Now the reference check-in is restored beside it, and the rationale says why."""
    facts = make_facts(risk=HIGH)
    completed = _complete(_with_check_in(facts, "Checking in - and a special offer on your plan!"), facts)

    assert ["a1-tcm-task", "a2-send-outreach", "a3-care-plan", "a2-check-in-restored"] == [
        p.action_id for p in completed.proposals]
    restored = completed.proposals[-1]
    assert restored.rationale.startswith(
        "Restored from the policy's rules: a check-in on the member's preferred channel (sms); the model:m plan had "
        "only a2-send-outreach, which the guardrails would block.")
    assert ["restored a2-check-in-restored (a check-in on the member's preferred channel (sms))"] == completed.changes


def test_whether_a_check_in_is_blocked_is_judged_by_the_runs_policy() -> None:
    """A 200-character SMS is blocked under the default 160-character limit, not under a policy allowing 300."""
    facts = make_facts(risk=HIGH)
    plan = _with_check_in(facts, "How are you feeling? " * 10)
    roomy = GuardrailPolicy(sms_max_chars=300)

    assert 1 == len(complete_plan(plan, _reference(facts), facts, high_risk_lace=10, planner="model:m").changes)
    assert [] == complete_plan(plan, _reference(facts), facts, high_risk_lace=10, planner="model:m",
                               policy=roomy).changes


def test_a_sendable_model_check_in_still_counts() -> None:
    """A model's own check-in that the guardrails let out is kept and nothing is restored."""
    facts = make_facts(risk=HIGH)
    completed = _complete(_with_check_in(facts, "Checking in after your hospital stay. Reply if you need help."),
                          facts)

    assert [] == completed.changes
