"""Tests for tools.care_plan: draft_care_plan writes a draft CarePlan with its Goals, once per key."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.goal import Goal
from temporalio.exceptions import ApplicationError

from store.fhir_validation import validate_resource
from tests.fhir_factory import make_member
from tools.care_plan import CarePlanActivity, DraftCarePlanArgs, DraftCarePlanInput, GoalSpec, draft_care_plan

DISCHARGED = datetime(2024, 6, 10, 15, 0, tzinfo=UTC)
AUTHORED = datetime(2024, 6, 11, 14, 0, tzinfo=UTC)


def _args(goals: int = 2) -> DraftCarePlanArgs:
    return DraftCarePlanArgs(
        title="Post-discharge plan",
        goals=[GoalSpec(description=f"Goal number {n}", due_in_days=7 * (n + 1)) for n in range(goals)],
        activities=[
            CarePlanActivity(kind="follow-up-visit", description="PCP visit within 7 days", due_in_days=7),
            CarePlanActivity(kind="education", description="Heart failure diet teaching"),
        ],
    )


def _input(member, key="wf-1#a3-care-plan", args=None, approved_by=None) -> DraftCarePlanInput:
    return DraftCarePlanInput(member_id=member.member_id, encounter_id=member.encounter_id, idempotency_key=key,
                              arguments=args or _args(), approved_by=approved_by, authored_at=AUTHORED)


def _type_and_id(reference: str) -> tuple[str, str]:
    rtype, rid = reference.split("/")
    return rtype, rid


def test_care_plan_and_goals_validate_as_r4b_with_value_sets(store):
    """Every resource written validates with the project's validator (R4B plus required value sets)."""
    member = make_member(store, discharged_at=DISCHARGED)
    result = draft_care_plan(store, _input(member))
    written = [store.get(*_type_and_id(ref)) for ref in [result.reference, *result.related]]

    assert written == [validate_resource(resource) for resource in written]


def test_care_plan_validates_directly_with_fhir_resources(store):
    """The CarePlan parses as a fhir.resources R4B CarePlan: draft proposal with not-started activities."""
    member = make_member(store, discharged_at=DISCHARGED)
    result = draft_care_plan(store, _input(member))
    plan = CarePlan.model_validate(store.get(*_type_and_id(result.reference)))

    assert ("draft", "proposal", f"Patient/{member.member_id}", ["not-started", "not-started"]) == (
        plan.status, plan.intent, plan.subject.reference, [a.detail.status for a in plan.activity])


def test_goals_validate_directly_with_fhir_resources(store):
    """Each Goal parses as a fhir.resources R4B Goal, proposed, due the given days after discharge."""
    member = make_member(store, discharged_at=DISCHARGED)
    result = draft_care_plan(store, _input(member))
    goals = [Goal.model_validate(store.get(*_type_and_id(ref))) for ref in result.related]

    assert [("proposed", "2024-06-17"), ("proposed", "2024-06-24")] == [
        (g.lifecycleStatus, g.target[0].dueDate.isoformat()) for g in goals]


def test_care_plan_references_its_goals_and_encounter(store):
    """The CarePlan points at each Goal written with it and at the discharge Encounter."""
    member = make_member(store, discharged_at=DISCHARGED)
    result = draft_care_plan(store, _input(member))
    plan = store.get(*_type_and_id(result.reference))

    assert (result.related, f"Encounter/{member.encounter_id}") == (
        [g["reference"] for g in plan["goal"]], plan["encounter"]["reference"])


def test_first_write_reports_created(store):
    """The first call with a key creates the plan and one Goal per goal."""
    member = make_member(store, discharged_at=DISCHARGED)
    result = draft_care_plan(store, _input(member, args=_args(goals=3)))

    assert (True, 3) == (result.created, len(result.related))


def test_same_idempotency_key_twice_writes_one_plan(store):
    """A retry with the same key returns the same plan (created False) and writes nothing more."""
    member = make_member(store, discharged_at=DISCHARGED)
    first = draft_care_plan(store, _input(member))
    second = draft_care_plan(store, _input(member))

    assert ((first.reference, first.related, False), 1, 2) == (
        (second.reference, second.related, second.created), store.count("CarePlan"), store.count("Goal"))


def test_different_keys_write_different_plans(store):
    """Two different keys give two plans."""
    member = make_member(store, discharged_at=DISCHARGED)
    first = draft_care_plan(store, _input(member, key="wf-1#a"))
    second = draft_care_plan(store, _input(member, key="wf-2#a"))

    assert (False, 2) == (first.reference == second.reference, store.count("CarePlan"))


def test_approver_is_noted_on_the_plan(store):
    """A human approval is recorded in the CarePlan's note."""
    member = make_member(store, discharged_at=DISCHARGED)
    result = draft_care_plan(store, _input(member, approved_by="rn-jones"))

    assert "Drafted by the careloom agent; approved by rn-jones." == store.get(
        *_type_and_id(result.reference))["note"][0]["text"]


def test_still_admitted_stay_cannot_get_a_care_plan(store):
    """Without a discharge there is nothing to plan from: EncounterNotFound, nothing written."""
    member = make_member(store, still_admitted=True)

    with pytest.raises(ApplicationError) as raised:
        draft_care_plan(store, _input(member))

    assert ("EncounterNotFound", True, 0) == (raised.value.type, raised.value.non_retryable,
                                              store.count("CarePlan"))


def test_encounter_of_another_member_is_refused(store):
    """A care plan for member A built on member B's encounter is refused (EncounterNotFound), nothing written."""
    first = make_member(store, discharged_at=DISCHARGED)
    second = make_member(store, discharged_at=DISCHARGED)
    data = DraftCarePlanInput(member_id=first.member_id, encounter_id=second.encounter_id,
                              idempotency_key="wf-x#a3", arguments=_args(), authored_at=AUTHORED)

    with pytest.raises(ApplicationError) as raised:
        draft_care_plan(store, data)

    assert ("EncounterNotFound", 0) == (raised.value.type, store.count("CarePlan"))


def test_created_is_when_the_plan_is_written_and_goals_stay_timed_from_the_discharge(store):
    """CarePlan.created is the write's time, not the input's; the period and goals still start at the discharge."""
    member = make_member(store, discharged_at=DISCHARGED)
    written = datetime(2024, 6, 12, 9, 30, tzinfo=UTC)
    result = draft_care_plan(store, _input(member), now=written)
    plan = store.get(*_type_and_id(result.reference))
    goal = store.get(*_type_and_id(result.related[0]))

    assert (written.isoformat(), DISCHARGED.isoformat(), "2024-06-10") == (
        plan["created"], plan["period"]["start"], goal["startDate"])


def test_created_defaults_to_the_moment_of_writing(store):
    """Without an explicit time the tool stamps the current time (not the input's authored_at)."""
    member = make_member(store, discharged_at=DISCHARGED)
    before = datetime.now(UTC)
    plan = store.get(*_type_and_id(draft_care_plan(store, _input(member)).reference))

    assert before <= datetime.fromisoformat(plan["created"]) <= datetime.now(UTC)


def test_a_retried_plan_write_keeps_the_first_created_time(store):
    """A retry at a later time returns the first plan, created when it was first written."""
    member = make_member(store, discharged_at=DISCHARGED)
    first_at = datetime(2024, 6, 12, 9, tzinfo=UTC)
    draft_care_plan(store, _input(member), now=first_at)
    again = draft_care_plan(store, _input(member), now=datetime(2024, 6, 12, 11, tzinfo=UTC))

    assert (False, first_at.isoformat()) == (again.created, store.get(*_type_and_id(again.reference))["created"])
