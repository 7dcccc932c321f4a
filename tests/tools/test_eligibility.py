"""Tests for tools.eligibility: is coverage in force on a date (CoverageEligibilityResponse terms)."""

from __future__ import annotations

from datetime import date

import pytest
from temporalio.exceptions import ApplicationError

from tests.fhir_factory import make_member
from tools.eligibility import EligibilityInput, check_eligibility, plan_type_of

ON = date(2024, 6, 10)


def _check(store, member_id, on=ON):
    return check_eligibility(store, EligibilityInput(member_id=member_id, on_date=on))


def _coverage(member_id, cid, *, status="active", text="Medicaid", start="2020-01-01", end="2099-12-31"):
    return {
        "resourceType": "Coverage", "id": cid, "status": status,
        "beneficiary": {"reference": f"Patient/{member_id}"}, "payor": [{"reference": "Organization/payer-x"}],
        "type": {"text": text}, "period": {"start": start, "end": end},
    }


def test_active_coverage_covering_the_date_is_in_force(store):
    """An active Coverage whose period includes the date: outcome complete, inforce, with plan type and id."""
    member = make_member(store)
    coverage_id = next(r["id"] for r in member.resources if r["resourceType"] == "Coverage")
    result = _check(store, member.member_id)

    assert ("complete", True, "medicare_advantage", coverage_id, None) == (
        result.outcome, result.inforce, result.plan_type, result.coverage_id, result.reason)


def test_period_end_is_inclusive(store):
    """Coverage ending on the date of service still covers that date."""
    member = make_member(store, coverage_end="2024-06-10")

    assert True is _check(store, member.member_id).inforce


def test_coverage_ended_before_the_date_is_not_in_force(store):
    """A period that ended before the date: not in force, and the reason names the date."""
    member = make_member(store, coverage_end="2024-03-31")
    result = _check(store, member.member_id)

    assert ("complete", False, "no coverage period includes 2024-06-10") == (
        result.outcome, result.inforce, result.reason)


def test_self_pay_is_not_in_force(store):
    """'Self-Pay / Uninsured' is not health-plan coverage: not in force."""
    member = make_member(store, coverage_type="Self-Pay / Uninsured")
    result = _check(store, member.member_id)

    assert (False, "self_pay", "self-pay: no health plan coverage") == (
        result.inforce, result.plan_type, result.reason)


def test_cancelled_coverage_is_in_force_until_its_period_end(store):
    """A cancelled Coverage whose period ends after the date is still in force on the date."""
    member = make_member(store, coverage_status="cancelled", coverage_end="2024-12-31")

    assert True is _check(store, member.member_id).inforce


def test_cancelled_coverage_is_not_in_force_after_its_period_end(store):
    """A cancelled Coverage whose period ended before the date is not in force."""
    member = make_member(store, coverage_status="cancelled", coverage_end="2024-05-31")

    assert False is _check(store, member.member_id).inforce


def test_draft_coverage_is_not_in_force(store):
    """A draft Coverage covering the date is not in force, and the reason names its status."""
    member = make_member(store, coverage_status="draft")
    result = _check(store, member.member_id)

    assert (False, "coverage status is draft") == (result.inforce, result.reason)


def test_member_without_coverage_is_not_in_force(store):
    """A member with no Coverage on file: outcome complete, not in force."""
    member = make_member()
    store.put_many([r for r in member.resources if r["resourceType"] != "Coverage"])
    result = _check(store, member.member_id)

    assert ("complete", False, "no coverage on file") == (result.outcome, result.inforce, result.reason)


def test_unreadable_coverage_period_is_an_error_outcome(store):
    """When no Coverage period can be read, the outcome is error (not a silent 'not in force')."""
    member = make_member()
    store.put_many([r for r in member.resources if r["resourceType"] != "Coverage"])
    store.put_many([_coverage(member.member_id, "cov-bad", start="01/01/2020")])
    result = _check(store, member.member_id)

    assert ("error", False) == (result.outcome, result.inforce)


def test_later_active_coverage_wins_over_an_expired_one(store):
    """With an expired and a current Coverage, the member is in force on the current one."""
    member = make_member(store, coverage_end="2023-12-31")
    store.put_many([_coverage(member.member_id, "cov-new", start="2024-01-01", text="Medicaid")])
    result = _check(store, member.member_id)

    assert (True, "cov-new", "medicaid") == (result.inforce, result.coverage_id, result.plan_type)


def test_self_pay_record_does_not_hide_an_active_plan(store):
    """A member with a Self-Pay record and an active Medicaid Coverage on the date is in force."""
    member = make_member(store, coverage_type="Self-Pay / Uninsured")  # period starts 2020-01-01
    store.put_many([_coverage(member.member_id, "cov-medicaid", start="2024-01-01", text="Medicaid")])
    result = _check(store, member.member_id)

    assert (True, "medicaid") == (result.inforce, result.plan_type)


def test_unknown_member_is_member_not_found(store):
    """An unknown member id raises MemberNotFound, non-retryable."""
    with pytest.raises(ApplicationError) as raised:
        _check(store, "pt-nobody")

    assert ("MemberNotFound", True) == (raised.value.type, raised.value.non_retryable)


@pytest.mark.parametrize(("text", "plan"), [
    ("Employer-sponsored group plan", "commercial"),
    ("Medicare (Part A/B)", "medicare"),
    ("Medicare Advantage (Part C)", "medicare_advantage"),
    ("Medicare + Medicaid (dual eligible)", "dual"),
    ("Medicaid", "medicaid"),
    ("CHIP", "chip"),
    ("VA / TRICARE / other public", "other_public"),
    ("Self-Pay / Uninsured", "self_pay"),
    ("Something else", "unknown"),
])
def test_plan_type_from_clinosim_type_text(text, plan):
    """Each clinosim Coverage.type text maps to its plan type."""
    assert plan == plan_type_of({"type": {"text": text}})


def test_individual_market_plan_is_commercial():
    """clinosim's 'Private insurance (individual market)' is a commercial plan."""
    assert "commercial" == plan_type_of({"type": {"text": "Private insurance (individual market)"}})


def test_plan_type_from_coding_display():
    """Without text, the plan type comes from the coding display."""
    assert "medicaid" == plan_type_of({"type": {"coding": [{"code": "x", "display": "State Medicaid plan"}]}})


def test_plan_type_flows_into_the_result(store):
    """check_eligibility reports the plan type of the Coverage in force."""
    member = make_member(store, coverage_type="Medicare + Medicaid (dual eligible)")

    assert "dual" == _check(store, member.member_id).plan_type


def test_coverage_ended_since_the_discharge_is_not_in_force_when_today_is_asked_too(store):
    """Covered on the discharge date, ended since: not in force, and the reason names the end and both dates
    (before: only the discharge date was checked, so a 2023 discharge whose plan ended was in force)."""
    member = make_member(store, coverage_end="2024-12-31")
    result = check_eligibility(store, EligibilityInput(member_id=member.member_id, on_date=ON,
                                                       also_on=date(2026, 3, 1)))

    assert ("complete", False, "medicare_advantage") == (result.outcome, result.inforce, result.plan_type)
    assert result.reason.startswith(f"coverage cov-test-{member.member_id.removeprefix('pt-test-')} ended "
                                    "2024-12-31: in force on 2024-06-10 but not on 2026-03-01"), result.reason


def test_coverage_in_force_on_both_dates_is_in_force(store):
    """A coverage covering the discharge date and today is in force; the result is the discharge date's."""
    member = make_member(store)
    both = check_eligibility(store, EligibilityInput(member_id=member.member_id, on_date=ON, also_on=date(2026, 3, 1)))

    assert (True, ON, None) == (both.inforce, both.on_date, both.reason)
