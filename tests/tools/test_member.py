"""Tests for tools.member: lookup_member returns the minimum necessary outreach view of a member."""

from __future__ import annotations

from datetime import date

import pytest
from temporalio.exceptions import ApplicationError

from tests.fhir_factory import make_member
from tools.member import LookupMemberInput, contact_points, lookup_member, pseudonym, time_zone_for_state

TODAY = date(2025, 5, 4)


def _lookup(store, member_id):
    return lookup_member(store, LookupMemberInput(member_id=member_id), salt="test-salt", today=TODAY)


def test_profile_contains_no_name_birth_date_phone_or_address(store):
    """Minimum necessary: the serialized profile holds no name, birth date, phone number or address."""
    member = make_member(store)
    serialized = _lookup(store, member.member_id).model_dump_json()
    patient = member.resources[0]
    identifying = [patient["name"][0]["family"], "Testy", patient["birthDate"], "1950", "555-0100", "508",
                   "Main St", "Worcester"]

    assert [] == [value for value in identifying if value in serialized]


def test_profile_fields_are_only_the_outreach_view(store):
    """The profile exposes exactly the outreach fields, nothing else."""
    member = make_member(store)

    assert {"member_id", "pseudonym", "age_years", "deceased", "preferred_language", "time_zone",
            "time_zone_known", "channels", "preferred_channel", "opted_out"} == set(
        _lookup(store, member.member_id).model_dump())


def test_age_is_in_whole_years_on_the_given_day(store):
    """Born 1950-05-05, the member is 74 on 2025-05-04 and 75 the next day."""
    member = make_member(store)
    ages = [lookup_member(store, LookupMemberInput(member_id=member.member_id), salt="s", today=day).age_years
            for day in (date(2025, 5, 4), date(2025, 5, 5))]

    assert [74, 75] == ages


def test_time_zone_comes_from_the_address_state(store):
    """A California address gives America/Los_Angeles, flagged as known."""
    member = make_member(store, state="CA")
    profile = _lookup(store, member.member_id)

    assert ("America/Los_Angeles", True) == (profile.time_zone, profile.time_zone_known)


def test_massachusetts_member_is_eastern(store):
    """An MA address (all clinosim members) gives America/New_York."""
    member = make_member(store, state="MA")

    assert "America/New_York" == _lookup(store, member.member_id).time_zone


def test_unknown_state_gives_default_zone_flagged_unknown(store):
    """An unknown state falls back to the default zone, with time_zone_known False."""
    member = make_member(store, state="ZZ")
    profile = _lookup(store, member.member_id)

    assert ("America/New_York", False) == (profile.time_zone, profile.time_zone_known)


def test_missing_address_gives_default_zone_flagged_unknown(store):
    """No address at all also falls back to the default zone, flagged unknown."""
    member = make_member(store, state=None)
    profile = _lookup(store, member.member_id)

    assert ("America/New_York", False) == (profile.time_zone, profile.time_zone_known)


@pytest.mark.parametrize(("state", "zone"), [
    ("ny", "America/New_York"), ("TX", "America/Chicago"), ("CO", "America/Denver"), ("AZ", "America/Phoenix"),
    ("WA", "America/Los_Angeles"), ("AK", "America/Anchorage"), ("HI", "Pacific/Honolulu"),
])
def test_state_to_zone(state, zone):
    """Each state maps to its primary IANA zone, case-insensitively."""
    assert (zone, True) == time_zone_for_state(state)


def test_mobile_phone_allows_sms_and_phone(store):
    """A mobile number gives sms and phone, plus letter from the address; sms is preferred."""
    member = make_member(store, phone_use="mobile")
    profile = _lookup(store, member.member_id)

    assert (["sms", "phone", "letter"], "sms") == (profile.channels, profile.preferred_channel)


def test_home_phone_allows_calls_not_texts(store):
    """A home (landline) number gives phone but not sms."""
    member = make_member(store, phone_use="home")

    assert ["phone", "letter"] == _lookup(store, member.member_id).channels


def test_no_phone_leaves_only_letter(store):
    """Without a phone number, a member with an address is reachable only by letter."""
    member = make_member(store, phone_use=None)
    profile = _lookup(store, member.member_id)

    assert (["letter"], "letter") == (profile.channels, profile.preferred_channel)


def test_no_phone_and_no_address_leaves_no_channel(store):
    """Without phone or address there is no channel and no preferred channel."""
    member = make_member(store, phone_use=None, state=None)
    profile = _lookup(store, member.member_id)

    assert ([], None) == (profile.channels, profile.preferred_channel)


def test_ended_contact_point_is_ignored():
    """A telecom whose period has ended is not a contact point."""
    patient = {"telecom": [{"system": "phone", "value": "555", "use": "mobile", "period": {"end": "2020-01-01"}},
                           {"system": "email", "value": "a@example.org"}]}

    assert {"email": "a@example.org"} == contact_points(patient)


def test_opted_out_consent_sets_opted_out(store):
    """An active Consent with a deny provision marks the member opted out."""
    member = make_member(store, opted_out=True)

    assert True is _lookup(store, member.member_id).opted_out


def test_member_without_consent_is_not_opted_out(store):
    """Without any Consent the member is not opted out."""
    member = make_member(store)

    assert False is _lookup(store, member.member_id).opted_out


def test_inactive_opt_out_consent_does_not_opt_out(store):
    """A Consent that is no longer active does not opt the member out."""
    member = make_member(store, opted_out=True)
    consent = next(r for r in member.resources if r["resourceType"] == "Consent")
    store.put_many([{**consent, "status": "inactive"}])

    assert False is _lookup(store, member.member_id).opted_out


def test_deceased_member_is_flagged(store):
    """A Patient with a deceased date is reported deceased."""
    member = make_member(store, deceased=True)

    assert True is _lookup(store, member.member_id).deceased


def test_living_member_is_not_flagged_deceased(store):
    """A Patient without deceased data is not deceased."""
    member = make_member(store)

    assert False is _lookup(store, member.member_id).deceased


def test_pseudonym_is_stable_salted_and_not_the_id(store):
    """The pseudonym is stable for one salt, differs with another salt, and does not contain the id."""
    member = make_member(store)
    first = _lookup(store, member.member_id).pseudonym

    assert (first, False, False) == (
        pseudonym(member.member_id, "test-salt"),
        first == pseudonym(member.member_id, "other-salt"),
        member.member_id in first,
    )


def test_unknown_member_is_a_non_retryable_member_not_found(store):
    """Looking up an id that is not in the store raises MemberNotFound, non-retryable."""
    with pytest.raises(ApplicationError) as raised:
        _lookup(store, "pt-does-not-exist")

    assert ("MemberNotFound", True) == (raised.value.type, raised.value.non_retryable)


def test_contact_point_with_future_end_is_still_used():
    """A mobile number whose period ends in 2099 is still in use: sms and phone."""
    patient = {"telecom": [{"system": "phone", "value": "555", "use": "mobile", "period": {"end": "2099-12-31"}}]}

    assert {"sms": "555", "phone": "555"} == contact_points(patient)
