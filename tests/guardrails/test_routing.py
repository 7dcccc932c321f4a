"""Approval routing: queue clocks in business or calendar time, escalation chains that cannot loop."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from guardrails.policy import ApprovalRouting, GuardrailPolicy, QueueRule, SlaRule
from guardrails.routing import clock_for
from tools.deadlines import add_business_time

NY = ZoneInfo("America/New_York")


def test_business_hours_skip_nights_and_weekends() -> None:
    """Eight business hours from Friday 15:00 (08-17 days) end Monday 14:00."""
    start = datetime(2024, 12, 6, 15, 0, tzinfo=NY)
    assert datetime(2024, 12, 9, 14, 0, tzinfo=NY) == add_business_time(
        start, timedelta(hours=8), "America/New_York", day_start_hour=8, day_end_hour=17)


def test_business_hours_skip_holidays() -> None:
    """A holiday Monday is skipped: Friday 15:00 + 8 business hours ends Tuesday 14:00."""
    start = datetime(2024, 12, 6, 15, 0, tzinfo=NY)
    assert datetime(2024, 12, 10, 14, 0, tzinfo=NY) == add_business_time(
        start, timedelta(hours=8), "America/New_York", day_start_hour=8, day_end_hour=17,
        holidays=[date(2024, 12, 9)])


def test_request_at_night_starts_counting_next_morning() -> None:
    """A request at 03:00 on a Tuesday with one business hour is due at 09:00."""
    start = datetime(2024, 12, 10, 3, 0, tzinfo=NY)
    assert datetime(2024, 12, 10, 9, 0, tzinfo=NY) == add_business_time(
        start, timedelta(hours=1), "America/New_York", day_start_hour=8, day_end_hour=17)


def test_default_rn_queue_gets_eight_business_hours_and_a_reminder_before() -> None:
    """The clinical-review queue: deadline after 8 business hours, reminder after 6."""
    now = datetime(2024, 12, 10, 13, 0, tzinfo=UTC)  # Tue 08:00 New York
    clock = clock_for("clinical-review", "rn", GuardrailPolicy(), now)
    assert ("clinical-review", "rn") == (clock.queue, clock.role)
    assert (datetime(2024, 12, 10, 21, 0, tzinfo=UTC), datetime(2024, 12, 10, 19, 0, tzinfo=UTC)) == (
        clock.deadline, clock.remind_at)


def test_calendar_queue_counts_every_hour() -> None:
    """The medical-review queue runs on a 72-hour calendar clock (expedited prior-auth style)."""
    now = datetime(2024, 12, 13, 22, 0, tzinfo=UTC)  # Friday night
    assert now + timedelta(hours=72) == clock_for("medical-review", "md", GuardrailPolicy(), now).deadline


def test_escalation_never_lowers_the_required_role() -> None:
    """An md item entering an rn queue still needs an md."""
    now = datetime(2024, 12, 10, 13, 0, tzinfo=UTC)
    assert "md" == clock_for("clinical-review", "md", GuardrailPolicy(), now).role


def test_routing_refuses_loops_and_undefined_queues() -> None:
    """An escalation chain that loops or names an undefined queue is refused when the policy is built."""
    rule = SlaRule(duration=timedelta(hours=1))
    with pytest.raises(ValidationError, match="loops"):
        ApprovalRouting(queues={"a": QueueRule(role="rn", sla=rule, escalate_to="b"),
                                "b": QueueRule(role="rn", sla=rule, escalate_to="a"),
                                "care-coordination": QueueRule(role="care_coordinator", sla=rule),
                                "clinical-review": QueueRule(role="rn", sla=rule),
                                "medical-review": QueueRule(role="md", sla=rule)})
    with pytest.raises(ValidationError, match="undefined queue"):
        ApprovalRouting(queues={"care-coordination": QueueRule(role="care_coordinator", sla=rule, escalate_to="x"),
                                "clinical-review": QueueRule(role="rn", sla=rule),
                                "medical-review": QueueRule(role="md", sla=rule)})


def test_routing_changes_the_policy_id() -> None:
    """A different SLA is a different policy: verdicts and ledger entries say which."""
    fast = ApprovalRouting(queues={**ApprovalRouting().queues,
                                   "clinical-review": QueueRule(role="rn", sla=SlaRule(duration=timedelta(hours=1)))})
    assert GuardrailPolicy().policy_id != GuardrailPolicy(approvals=fast).policy_id
