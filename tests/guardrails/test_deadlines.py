"""Tests for tools.deadlines: TCPA contact hours and TCM business-day clocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from tools.deadlines import add_business_days, next_contact_time, tcm_contact_due

NY = "America/New_York"
LA = "America/Los_Angeles"
WINDOW = {"start": time(8), "end": time(21)}


# --- next_contact_time -------------------------------------------------------

def test_night_outreach_is_deferred_to_next_morning_eight_local():
    """An outreach at 21:30 member-local time opens at 08:00 local the next day (TCPA window 08:00-21:00)."""
    now = datetime(2024, 6, 11, 1, 30, tzinfo=UTC)  # Mon 10 Jun 21:30 EDT

    actual = next_contact_time(now, NY, **WINDOW)

    assert datetime(2024, 6, 11, 12, 0, tzinfo=UTC) == actual  # Tue 11 Jun 08:00 EDT


def test_early_morning_outreach_opens_at_eight_the_same_day():
    """An outreach at 07:00 local opens at 08:00 local the same day."""
    now = datetime(2024, 6, 10, 11, 0, tzinfo=UTC)  # Mon 07:00 EDT

    assert datetime(2024, 6, 10, 12, 0, tzinfo=UTC) == next_contact_time(now, NY, **WINDOW)


def test_inside_the_window_needs_no_deferral():
    """Inside the contact window there is no next opening (None)."""
    now = datetime(2024, 6, 10, 18, 0, tzinfo=UTC)  # Mon 14:00 EDT

    assert None is next_contact_time(now, NY, **WINDOW)


def test_window_start_is_inclusive():
    """08:00:00 local is already inside the window."""
    now = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)  # 08:00 EDT

    assert None is next_contact_time(now, NY, **WINDOW)


def test_window_end_is_exclusive():
    """21:00:00 local is outside the window: no contact at or after 9 p.m."""
    now = datetime(2024, 6, 11, 1, 0, tzinfo=UTC)  # Mon 21:00 EDT

    assert datetime(2024, 6, 11, 12, 0, tzinfo=UTC) == next_contact_time(now, NY, **WINDOW)


def test_opening_after_spring_forward_uses_daylight_time():
    """Deferred across the March DST change, the next 08:00 is 08:00 EDT (12:00 UTC), not EST."""
    now = datetime(2025, 3, 9, 2, 30, tzinfo=UTC)  # Sat 8 Mar 21:30 EST; clocks spring forward on 9 Mar

    assert datetime(2025, 3, 9, 12, 0, tzinfo=UTC) == next_contact_time(now, NY, **WINDOW)


def test_opening_before_spring_forward_uses_standard_time():
    """On the day before the DST change, 08:00 local is 08:00 EST (13:00 UTC)."""
    now = datetime(2025, 3, 8, 11, 0, tzinfo=UTC)  # Sat 8 Mar 06:00 EST

    assert datetime(2025, 3, 8, 13, 0, tzinfo=UTC) == next_contact_time(now, NY, **WINDOW)


def test_member_time_zone_decides_the_opening():
    """The same instant opens at 08:00 in each member's own zone: Los Angeles three hours after New York."""
    now = datetime(2024, 6, 10, 5, 0, tzinfo=UTC)  # 01:00 EDT, Sun 22:00 PDT

    actual = (next_contact_time(now, NY, **WINDOW), next_contact_time(now, LA, **WINDOW))

    assert (datetime(2024, 6, 10, 12, 0, tzinfo=UTC), datetime(2024, 6, 10, 15, 0, tzinfo=UTC)) == actual


def test_inside_window_in_one_zone_is_outside_in_another():
    """22:00 in New York is 19:00 in Los Angeles: deferred for one member, allowed for the other."""
    now = datetime(2024, 6, 11, 2, 0, tzinfo=UTC)

    actual = (next_contact_time(now, NY, **WINDOW), next_contact_time(now, LA, **WINDOW))

    assert (datetime(2024, 6, 11, 12, 0, tzinfo=UTC), None) == actual


def test_opening_is_returned_in_utc():
    """The next opening is an aware UTC datetime, whatever the member's zone."""
    opening = next_contact_time(datetime(2024, 6, 10, 5, 0, tzinfo=UTC), LA, **WINDOW)

    assert UTC == opening.tzinfo


# --- add_business_days -------------------------------------------------------

def test_two_business_days_after_friday_is_tuesday():
    """Weekends are skipped: Friday + 2 business days is Tuesday."""
    assert date(2024, 6, 11) == add_business_days(date(2024, 6, 7), 2)


def test_two_business_days_after_monday_is_wednesday():
    """Midweek, business days are calendar days."""
    assert date(2024, 6, 12) == add_business_days(date(2024, 6, 10), 2)


def test_holiday_is_skipped():
    """A holiday is not a business day: Friday before Memorial Day + 2 is Wednesday."""
    assert date(2024, 5, 29) == add_business_days(date(2024, 5, 24), 2, holidays=[date(2024, 5, 27)])


def test_saturday_start_counts_from_monday():
    """From a Saturday the first business day is Monday, the second Tuesday."""
    assert date(2024, 6, 11) == add_business_days(date(2024, 6, 8), 2)


def test_zero_business_days_is_the_start_date():
    """Adding no business days returns the start date itself."""
    assert date(2024, 6, 8) == add_business_days(date(2024, 6, 8), 0)


# --- tcm_contact_due ---------------------------------------------------------

def test_friday_discharge_is_due_tuesday_end_of_business():
    """TCM: a Friday discharge is due Tuesday at 17:00 member-local time."""
    discharged = datetime(2024, 6, 7, 19, 0, tzinfo=UTC)  # Fri 15:00 EDT

    assert datetime(2024, 6, 11, 21, 0, tzinfo=UTC) == tcm_contact_due(discharged, NY)  # Tue 17:00 EDT


def test_friday_discharge_before_monday_holiday_is_due_wednesday():
    """A configured Monday holiday moves a Friday discharge's deadline to Wednesday 17:00 local."""
    discharged = datetime(2024, 5, 24, 16, 0, tzinfo=UTC)  # Fri 24 May 12:00 EDT

    actual = tcm_contact_due(discharged, NY, holidays=[date(2024, 5, 27)])

    assert datetime(2024, 5, 29, 21, 0, tzinfo=UTC) == actual


def test_discharge_day_is_the_member_local_day():
    """A discharge on Friday 22:00 local (already Saturday in UTC) still counts as a Friday discharge."""
    discharged = datetime(2024, 6, 8, 2, 0, tzinfo=UTC)  # Fri 7 Jun 22:00 EDT

    assert datetime(2024, 6, 11, 21, 0, tzinfo=UTC) == tcm_contact_due(discharged, NY)


def test_due_time_in_los_angeles_is_five_pm_pacific():
    """End of business is 17:00 in the member's zone: 00:00 UTC the next day for Pacific daylight time."""
    discharged = datetime(2024, 6, 7, 19, 0, tzinfo=UTC)  # Fri 12:00 PDT

    assert datetime(2024, 6, 12, 0, 0, tzinfo=UTC) == tcm_contact_due(discharged, LA)


def test_due_date_after_spring_forward_uses_daylight_time():
    """A Friday discharge before the March DST change is due Tuesday 17:00 EDT (21:00 UTC)."""
    discharged = datetime(2025, 3, 7, 20, 0, tzinfo=UTC)  # Fri 7 Mar 15:00 EST

    assert datetime(2025, 3, 11, 21, 0, tzinfo=UTC) == tcm_contact_due(discharged, NY)


def test_end_of_business_hour_is_configurable():
    """A different end-of-business hour moves the due time within the due day."""
    discharged = datetime(2024, 6, 7, 19, 0, tzinfo=UTC)

    assert datetime(2024, 6, 11, 22, 0, tzinfo=UTC) == tcm_contact_due(discharged, NY, end_of_business_hour=18)


def test_end_of_business_at_hour_24_is_midnight():
    """An end of business at hour 24 (the policy's maximum) is midnight at the end of the due day."""
    discharged = datetime(2024, 6, 7, 19, 0, tzinfo=UTC)  # Fri 15:00 EDT

    assert datetime(2024, 6, 12, 4, 0, tzinfo=UTC) == tcm_contact_due(discharged, NY, end_of_business_hour=24)
