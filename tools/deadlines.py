"""Clocks from the rules: TCPA contact hours and TCM business-day deadlines.

Pure functions of their arguments (no clock reads), so workflow code can call
them with ``workflow.now()`` and replay gets the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["add_business_days", "add_business_time", "next_contact_time", "tcm_contact_due"]


def next_contact_time(now: datetime, time_zone: str, *, start: time, end: time) -> datetime | None:
    """None if ``now`` is inside the member-local contact window ``[start, end)``, else the next opening (UTC).

    With the TCPA window 08:00-21:00, a call at 21:30 moves to 08:00 the next
    day and a call at 06:00 to 08:00 the same day.
    """
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    if start <= local.time() < end:
        return None
    day = local.date() if local.time() < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone).astimezone(UTC)


def add_business_days(start: date, days: int, holidays: Iterable[date] = ()) -> date:
    """The date ``days`` business days (Mon–Fri, not a holiday) after ``start``."""
    closed = set(holidays)
    current = start
    remaining = days
    while remaining > 0:
        current += timedelta(days=1)
        if current.weekday() < 5 and current not in closed:
            remaining -= 1
    return current


def tcm_contact_due(
    discharged_at: datetime,
    time_zone: str,
    *,
    business_days: int = 2,
    end_of_business_hour: int = 17,
    holidays: Iterable[date] = (),
) -> datetime:
    """End of business on the 2nd business day after discharge (TCM interactive contact), in UTC.

    A Friday discharge is due Tuesday at end of business.
    """
    zone = ZoneInfo(time_zone)
    local_day = discharged_at.astimezone(zone).date()
    due_day = add_business_days(local_day, business_days, holidays)
    if end_of_business_hour >= 24:  # end of business at midnight closing the due day
        return datetime.combine(due_day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return datetime.combine(due_day, time(end_of_business_hour), tzinfo=zone).astimezone(UTC)


def add_business_time(
    start: datetime,
    duration: timedelta,
    time_zone: str,
    *,
    day_start_hour: int,
    day_end_hour: int,
    holidays: Iterable[date] = (),
) -> datetime:
    """``start`` plus ``duration`` counted only in business hours (Mon–Fri, not holidays), in UTC.

    Eight business hours from Friday 15:00 with a 08–17 day end on Monday 14:00.
    """
    zone = ZoneInfo(time_zone)
    closed = set(holidays)
    current = start.astimezone(zone)
    remaining = duration
    while True:
        day = current.date()
        opens = datetime.combine(day, time(day_start_hour), tzinfo=zone)
        closes = (datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone) if day_end_hour >= 24
                  else datetime.combine(day, time(day_end_hour), tzinfo=zone))
        if day.weekday() >= 5 or day in closed or current >= closes:
            current = datetime.combine(day + timedelta(days=1), time(day_start_hour), tzinfo=zone)
            continue
        current = max(current, opens)
        available = closes - current
        if remaining <= available:
            return (current + remaining).astimezone(UTC)
        remaining -= available
        current = closes
