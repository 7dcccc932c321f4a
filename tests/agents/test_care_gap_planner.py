"""Tests for agents.care_gap_planner: the offline care-gap rules and the activity hosting them.

Facts are built by hand (tests.guardrails.test_care_gap_rules.make_gap_facts: a member, coverage, a gap
review over the four shipped measures). The planner has no clock: ``now`` is part of its input.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from temporalio import activity

from agents.care_gap_planner import (
    PLAN_CARE_GAPS,
    GapPlannerActivity,
    GapPlannerInput,
    OfflineGapRules,
    reminder_message,
)
from guardrails.care_gap_rules import CLINICAL_TERMS, clinical_terms_in
from guardrails.actions import ProposedAction
from guardrails.facts import CareGapFacts
from tests.guardrails.test_care_gap_rules import MEASURES, make_gap_facts
from tools.care_gaps import GapReview, GapStatus
from tools.outreach import SendOutreachArgs
from tools.tasks import CreateTaskArgs

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
OPEN = ("cms122-diabetes-hba1c-poor-control", "cms165-controlling-high-blood-pressure")


def plan(facts: CareGapFacts, now: datetime = NOW) -> list[ProposedAction]:
    return OfflineGapRules().plan(GapPlannerInput(workflow_id="wf-gaps-1", facts=facts, now=now)).proposals


def test_open_gaps_get_a_reminder_a_scheduling_task_and_a_pcp_task() -> None:
    proposals = plan(make_gap_facts())
    assert [p.action_id for p in proposals] == ["g1-reminder", "g2-scheduling", "g3-pcp"]
    message, scheduling, pcp = (p.arguments for p in proposals)
    assert isinstance(message, SendOutreachArgs)
    assert (message.channel, message.template) == ("sms", "follow-up-reminder")
    assert isinstance(scheduling, CreateTaskArgs) and isinstance(pcp, CreateTaskArgs)
    assert (scheduling.kind, scheduling.queue, scheduling.priority) == (
        "gap-closure-scheduling", "care-gaps/scheduling", "routine")
    assert (pcp.kind, pcp.queue, pcp.priority) == ("pcp-gap-notification", "care-gaps/pcp-outreach", "routine")
    assert scheduling.service_effect == pcp.service_effect == "none"


def test_the_tasks_name_the_open_measures_by_id_and_only_those() -> None:
    _, scheduling, pcp = (p.arguments for p in plan(make_gap_facts()))
    assert scheduling.reason == pcp.reason == f"open care gaps: {', '.join(OPEN)}"
    for text in (scheduling.description, pcp.description):
        assert all(m in text for m in OPEN)
        assert "cms125-breast-cancer-screening" not in text  # met, not open


def test_the_reminder_is_short_generic_and_counts_the_items() -> None:
    every_gap_open = make_gap_facts(open_ids=tuple(MEASURES), closed_ids=())
    message = plan(every_gap_open)[0].arguments
    assert message.message.endswith(" 4 items are due.")
    assert len(message.message) <= 160
    assert clinical_terms_in(message.message, every_gap_open) == []
    lowered = message.message.lower()
    assert not [t for t in CLINICAL_TERMS if t in lowered]
    assert not [m for m in MEASURES if m in lowered or m.split("-")[0] in lowered]


def test_one_open_gap_is_one_item() -> None:
    assert reminder_message(1).endswith(" 1 item is due.")
    assert plan(make_gap_facts(open_ids=OPEN[:1]))[0].arguments.message == reminder_message(1)


def test_the_preferred_channel_is_used() -> None:
    facts = make_gap_facts(channels=("letter", "sms"))
    assert plan(facts)[0].arguments.channel == "letter"


def test_without_a_preferred_channel_the_first_channel_is_used() -> None:
    facts = make_gap_facts(channels=("phone", "email"))
    facts = facts.model_copy(update={"member": facts.member.model_copy(update={"preferred_channel": None})})
    assert plan(facts)[0].arguments.channel == "phone"


def test_no_channel_means_no_message_but_both_tasks() -> None:
    proposals = plan(make_gap_facts(channels=()))
    assert [p.action_id for p in proposals] == ["g2-scheduling", "g3-pcp"]
    assert "no contact channel" in proposals[0].arguments.reason


@pytest.mark.parametrize("open_ids,closed_ids", [((), ("cms125-breast-cancer-screening",)), ((), ())])
def test_no_open_gap_means_no_proposal(open_ids: tuple[str, ...], closed_ids: tuple[str, ...]) -> None:
    output = OfflineGapRules().plan(GapPlannerInput(workflow_id="wf", facts=make_gap_facts(
        open_ids=open_ids, closed_ids=closed_ids), now=NOW))
    assert (output.planner, output.proposals) == ("offline-gap-rules/1", [])


def test_a_gap_open_outside_the_denominator_is_not_planned_for() -> None:
    facts = make_gap_facts()
    gaps = [g.model_copy(update={"in_denominator": False}) for g in facts.review.gaps]
    facts = facts.model_copy(update={"review": facts.review.model_copy(update={"gaps": gaps})})
    assert plan(facts) == []


def test_tasks_are_due_in_14_days() -> None:
    _, scheduling, pcp = (p.arguments for p in plan(make_gap_facts()))
    assert scheduling.due == pcp.due == NOW + timedelta(days=14)


def test_due_never_falls_after_the_period_end() -> None:
    late = datetime(2026, 12, 24, 9, 0, tzinfo=UTC)
    _, scheduling, pcp = (p.arguments for p in plan(make_gap_facts(), now=late))
    assert scheduling.due == pcp.due == datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_now_in_another_offset_is_counted_in_utc() -> None:
    shifted = NOW.astimezone(ZoneInfo("America/New_York"))
    due = plan(make_gap_facts(), now=shifted)[1].arguments.due
    assert due == NOW + timedelta(days=14) and due.utcoffset() == timedelta(0)


def test_now_must_be_aware() -> None:
    with pytest.raises(ValidationError, match="now needs a UTC offset"):
        GapPlannerInput(workflow_id="wf", facts=make_gap_facts(), now=datetime(2026, 3, 2, 15, 0))


def test_the_plan_is_deterministic() -> None:
    first = OfflineGapRules().plan(GapPlannerInput(workflow_id="wf", facts=make_gap_facts(), now=NOW))
    again = OfflineGapRules().plan(GapPlannerInput.model_validate_json(
        GapPlannerInput(workflow_id="wf", facts=make_gap_facts(), now=NOW).model_dump_json()))
    assert first.model_dump() == again.model_dump()
    assert [p.digest for p in first.proposals] == [p.digest for p in again.proposals]


def test_confidence_follows_the_signals() -> None:
    certain = plan(make_gap_facts())
    assert [p.confidence for p in certain] == [0.99, 0.99, 0.99]
    assert {s.name for s in certain[0].signals} == {"data_completeness", "reachability", "eligibility_certainty",
                                                   "rule_specificity"}
    defaulted_zone = plan(make_gap_facts(time_zone_known=False))
    assert [p.confidence for p in defaulted_zone] == [0.89, 0.99, 0.99]  # only the message needs the zone


def test_an_open_gap_citing_no_record_lowers_confidence() -> None:
    facts = make_gap_facts()
    gaps = [g.model_copy(update={"evidence": []}) for g in facts.review.gaps]
    facts = facts.model_copy(update={"review": facts.review.model_copy(update={"gaps": gaps})})
    assert [p.confidence for p in plan(facts)] == [0.84, 0.84, 0.84]


def test_many_long_measure_ids_fold_into_a_count_within_the_task_limits() -> None:
    ids = [f"measure-{n:02d}-with-a-rather-long-identifier" for n in range(12)]
    review = GapReview(period_start=date(2026, 1, 1), period_end=date(2026, 12, 31), measures_version="x@1",
                       gaps=[GapStatus(measure_id=m, title="Care", in_denominator=True, gap_open=True,
                                       evidence=["Encounter/e1"]) for m in ids])
    facts = make_gap_facts().model_copy(update={"review": review})
    _, scheduling, pcp = (p.arguments for p in plan(facts))
    for text in (scheduling.description, scheduling.reason, pcp.description):
        assert len(text) <= 300
        assert text.endswith(" more") and ids[0] in text


async def test_the_activity_plans_with_the_offline_rules_under_the_declared_name() -> None:
    host = GapPlannerActivity()
    [method] = host.activities()
    assert activity._Definition.must_from_callable(method).name == PLAN_CARE_GAPS.name  # noqa: SLF001
    assert PLAN_CARE_GAPS.name == "agents.plan_care_gaps"
    assert (PLAN_CARE_GAPS.kind, PLAN_CARE_GAPS.input_type) == ("planner", GapPlannerInput)
    assert PLAN_CARE_GAPS.heartbeat_timeout is not None
    data = GapPlannerInput(workflow_id="wf", facts=make_gap_facts(), now=NOW, round=2)
    output = await host.plan_care_gaps(data)
    assert output == OfflineGapRules().plan(data)
    assert output.planner == "offline-gap-rules/1"
