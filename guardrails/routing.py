"""Where an approval goes and by when: queue, priority, SLA deadline, reminder, escalation.

Pure functions of the policy and workflow time. Escalation never lowers the
role an item needs, and nothing here approves anything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from guardrails.policy import GuardrailPolicy, Role, max_role
from tools.deadlines import add_business_time

__all__ = ["Clock", "Priority", "clock_for"]

Priority = Literal["routine", "urgent"]


class Clock(BaseModel):
    """An item's SLA timestamps in one queue."""

    queue: str
    role: Role
    remind_at: datetime
    deadline: datetime


def clock_for(queue: str, required_role: Role, policy: GuardrailPolicy, now: datetime) -> Clock:
    """The clock of an item entering ``queue`` at ``now``; the role is the higher of the two."""
    routing = policy.approvals
    rule = routing.queues[queue]
    sla = rule.sla
    if sla.clock == "calendar":
        deadline = now + sla.duration
        remind_at = now + sla.duration * sla.remind_at_fraction
    else:
        def after(duration):  # noqa: ANN001, ANN202
            return add_business_time(now, duration, routing.business_time_zone,
                                     day_start_hour=routing.business_day_start_hour,
                                     day_end_hour=policy.business_day_end_hour, holidays=policy.holidays)
        deadline = after(sla.duration)
        remind_at = after(sla.duration * sla.remind_at_fraction)
    return Clock(queue=queue, role=max_role([required_role, rule.role]), remind_at=remind_at, deadline=deadline)
