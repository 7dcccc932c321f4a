"""Tests for tools.member: lookup_member returns the minimum necessary outreach view of a member."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from temporalio.exceptions import ApplicationError

from tests.fhir_factory import make_member
from tools.member import LookupMemberInput, contact_points, lookup_member, pseudonym, time_zone_for_state
from tools.time_zones import resolve_member_zone, time_zone_for_zip

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

    assert {"member_id", "pseudonym", "age_years", "age_as_of", "deceased", "preferred_language", "time_zone",
            "time_zone_known", "time_zone_source", "time_zone_gap", "channels", "preferred_channel",
            "opted_out"} == set(
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


def _with_address(store, **address):
    """A member whose only address is ``address`` (replacing the factory's)."""
    member = make_member(store)
    patient = {**member.resources[0], "address": [{"use": "home", "line": ["1 Main St"], **address}]}
    store.put_many([patient])
    return member


@pytest.mark.parametrize(("state", "zone"), [
    ("California", "America/Los_Angeles"), ("CALIFORNIA", "America/Los_Angeles"), ("new york", "America/New_York"),
    ("District of Columbia", "America/New_York"), ("Washington, D.C.", "America/New_York"),
    ("  texas ", "America/Chicago"), ("Arizona", "America/Phoenix"), ("hawaii", "Pacific/Honolulu"),
    ("PR", "America/Puerto_Rico"), ("Puerto Rico", "America/Puerto_Rico"), ("GU", "Pacific/Guam"),
    ("Guam", "Pacific/Guam"), ("VI", "America/St_Thomas"), ("U.S. Virgin Islands", "America/St_Thomas"),
    ("AS", "Pacific/Pago_Pago"), ("American Samoa", "Pacific/Pago_Pago"), ("MP", "Pacific/Saipan"),
    ("Northern Mariana Islands", "Pacific/Saipan"),
])
def test_full_state_and_territory_names_in_any_case_give_their_zone(state, zone):
    """Feeds such as Synthea write the state's name: any case, and territories too, give the state's zone."""
    assert (zone, True) == time_zone_for_state(state)


def test_full_state_name_in_the_address_gives_the_members_zone(store):
    """"state": "California" (Synthea's form) is a Pacific member, from the state, not a defaulted Eastern."""
    profile = _lookup(store, _with_address(store, city="Los Angeles", state="California").member_id)

    assert ("America/Los_Angeles", True, "state", None) == (
        profile.time_zone, profile.time_zone_known, profile.time_zone_source, profile.time_zone_gap)


def test_zip_code_alone_gives_the_zone(store):
    """An address with only a ZIP code (no state) takes the zone of the ZIP code from the ZIP dataset."""
    profile = _lookup(store, _with_address(store, postalCode="90012-1234").member_id)

    assert ("America/Los_Angeles", "zip") == (profile.time_zone, profile.time_zone_source)


@pytest.mark.parametrize(("state", "postal_code", "zone"), [
    ("Florida", "32501", "America/Chicago"),      # Pensacola: the panhandle is Central, most of Florida Eastern
    ("TX", "79901", "America/Denver"),            # El Paso: Mountain, most of Texas Central
    ("Oregon", "97914", "America/Boise"),         # Ontario OR: Mountain, most of Oregon Pacific
])
def test_in_a_state_with_two_zones_the_zip_code_decides(store, state, postal_code, zone):
    """Where a state spans two zones the ZIP code picks the member's side of the line."""
    profile = _lookup(store, _with_address(store, state=state, postalCode=postal_code).member_id)

    assert (zone, "zip") == (profile.time_zone, profile.time_zone_source)


def test_a_zip_code_from_another_state_does_not_override_the_state(store):
    """A Florida address with a Los Angeles ZIP code is a typo in one of them: the state's zone is used."""
    profile = _lookup(store, _with_address(store, state="Florida", postalCode="90012").member_id)

    assert ("America/New_York", "state") == (profile.time_zone, profile.time_zone_source)


def test_unrecognised_state_and_no_address_are_different_reasons(store):
    """"Narnia" is an unrecognised state; no address is no address; both use the plan's zone, flagged."""
    unrecognised = _lookup(store, _with_address(store, state="Narnia").member_id)
    no_address = _lookup(store, make_member(store, state=None).member_id)

    assert [("unrecognised_state", "plan_default", False), ("no_address", "plan_default", False)] == [
        (p.time_zone_gap, p.time_zone_source, p.time_zone_known) for p in (unrecognised, no_address)]
    assert "plan zone America/New_York: the address state is not a recognised US state or territory" == (
        unrecognised.time_zone_basis)
    assert "plan zone America/New_York: no address on file" == no_address.time_zone_basis


def test_unrecognised_state_with_a_known_zip_code_uses_the_zip_code(store):
    """An unreadable state ("Calif.") with a real ZIP code still gives the member's zone, from the ZIP code."""
    profile = _lookup(store, _with_address(store, state="Calif.", postalCode="94103").member_id)

    assert ("America/Los_Angeles", "zip") == (profile.time_zone, profile.time_zone_source)


def test_unknown_zip_and_an_address_without_state_or_zip_have_their_own_reasons(store):
    """A ZIP code not in the dataset, and an address naming neither state nor ZIP, say which it was."""
    unknown_zip = _lookup(store, _with_address(store, postalCode="00000").member_id)
    bare = _lookup(store, _with_address(store, city="Springfield").member_id)

    assert ["unrecognised_zip", "no_state_or_zip"] == [unknown_zip.time_zone_gap, bare.time_zone_gap]


def test_the_plans_zone_is_used_only_when_nothing_else_is_known(store):
    """The plan zone given to the lookup stands in for a member without address; a member with one keeps theirs."""
    lost = make_member(store, state=None)
    placed = _with_address(store, state="new york")
    profiles = [lookup_member(store, LookupMemberInput(member_id=m.member_id), salt="s", today=TODAY,
                              default_zone="America/Chicago") for m in (lost, placed)]

    assert [("America/Chicago", "plan_default"), ("America/New_York", "state")] == [
        (p.time_zone, p.time_zone_source) for p in profiles]


def test_a_current_home_address_outranks_an_old_one(store):
    """The member moved from New York to California: the old address (use old) does not decide the zone."""
    member = make_member(store)
    patient = {**member.resources[0], "address": [{"use": "old", "state": "NY"},
                                                   {"use": "home", "state": "California"}]}

    assert "America/Los_Angeles" == resolve_member_zone(patient).zone


def test_zip_codes_that_are_not_us_zip_codes_give_nothing():
    """Malformed and unknown ZIP codes give no zone (never an exception)."""
    assert [None, None, None, None] == [time_zone_for_zip(z) for z in ("", "1234", "ABCDE", "00000")]


def test_profile_holds_no_zip_code_or_state(store):
    """Minimum necessary: the ZIP code and state decide the zone but do not leave the tool."""
    member = _with_address(store, state="California", postalCode="90012")
    serialized = _lookup(store, member.member_id).model_dump_json()

    assert ("90012" in serialized, "California" in serialized) == (False, False)


def test_age_is_counted_on_the_discharge_day_not_the_lookup_day(store):
    """Born 1950-05-05, discharged 2023-03-01 and looked up in 2025: the profile says 72 (as of discharge),
    not 74 (today)."""
    member = make_member(store, discharged_at=datetime(2023, 3, 1, 15, tzinfo=UTC))
    profile = lookup_member(store, LookupMemberInput(member_id=member.member_id, encounter_id=member.encounter_id),
                            salt="s", today=TODAY)

    assert (72, date(2023, 3, 1)) == (profile.age_years, profile.age_as_of)


def test_age_on_a_birthday_discharged_late_evening_local_counts_the_local_day(store):
    """Discharged 2025-05-05 02:00 UTC is still 2025-05-04 in New York: the day before the 75th birthday."""
    member = make_member(store, discharged_at=datetime(2025, 5, 5, 2, tzinfo=UTC))
    profile = lookup_member(store, LookupMemberInput(member_id=member.member_id, encounter_id=member.encounter_id),
                            salt="s", today=date(2025, 6, 1))

    assert (74, date(2025, 5, 4)) == (profile.age_years, profile.age_as_of)


def test_another_members_encounter_does_not_set_the_age_day(store):
    """An encounter of someone else is ignored for the age (the clinical tool refuses it): today is used."""
    member, other = make_member(store), make_member(store, discharged_at=datetime(2020, 1, 1, tzinfo=UTC))
    profile = lookup_member(store, LookupMemberInput(member_id=member.member_id, encounter_id=other.encounter_id),
                            salt="s", today=TODAY)

    assert (74, TODAY) == (profile.age_years, profile.age_as_of)
