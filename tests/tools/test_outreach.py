"""Tests for tools.outreach: send_outreach records a Communication, re-checking consent, channel and hours."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from fhir.resources.R4B.communication import Communication
from temporalio.exceptions import ApplicationError

from store.fhir_validation import validate_resource
from tests.fhir_factory import make_member
from tools.outreach import SendOutreachArgs, SendOutreachInput, contact_day_key, send_outreach

NOON_NY = datetime(2024, 6, 11, 16, 0, tzinfo=UTC)   # 12:00 EDT
NIGHT_NY = datetime(2024, 6, 12, 1, 30, tzinfo=UTC)  # 21:30 EDT, 18:30 PDT
MESSAGE = "Hello from your care team. How are you feeling since you got home?"


def _input(member, *, channel="sms", message=MESSAGE, key="wf-1#a1-outreach") -> SendOutreachInput:
    return SendOutreachInput(
        member_id=member.member_id, encounter_id=member.encounter_id, idempotency_key=key,
        arguments=SendOutreachArgs(channel=channel, template="post-discharge-check-in", message=message),
        contact_window_start=time(8), contact_window_end=time(21),
    )


def _refusal(store, data, now=NOON_NY) -> tuple[str, bool, int]:
    with pytest.raises(ApplicationError) as raised:
        send_outreach(store, data, now=now)
    return raised.value.type, raised.value.non_retryable, store.count("Communication")


def test_communication_validates_with_value_sets(store):
    """The Communication written validates with the project's validator (R4B plus required value sets)."""
    member = make_member(store)
    result = send_outreach(store, _input(member), now=NOON_NY)
    written = store.get("Communication", result.reference.split("/")[1])

    assert written == validate_resource(written)


def test_communication_validates_directly_with_fhir_resources(store):
    """The Communication parses as a fhir.resources R4B Communication with the message and send time; its
    status is in-progress (handed over, not known delivered), never completed without a delivery receipt."""
    member = make_member(store)
    result = send_outreach(store, _input(member), now=NOON_NY)
    comm = Communication.model_validate(store.get("Communication", result.reference.split("/")[1]))

    assert ("in-progress", f"Patient/{member.member_id}", MESSAGE, NOON_NY, "WRITTEN") == (
        comm.status, comm.subject.reference, comm.payload[0].contentString, comm.sent,
        comm.medium[0].coding[0].code)


def test_same_idempotency_key_twice_records_one_communication(store):
    """A retry with the same key returns the same Communication (created False), not a second message."""
    member = make_member(store)
    first = send_outreach(store, _input(member), now=NOON_NY)
    second = send_outreach(store, _input(member), now=NOON_NY)

    assert ((True, False), first.reference, 1) == (
        (first.created, second.created), second.reference, store.count("Communication"))


def test_opted_out_member_is_refused(store):
    """The tool refuses an opted-out member with ContactNotAllowed and records nothing."""
    member = make_member(store, opted_out=True)

    assert ("ContactNotAllowed", True, 0) == _refusal(store, _input(member))


def test_outside_contact_hours_is_refused(store):
    """An SMS at 21:30 member-local time is refused with OutsideContactHours and nothing is recorded."""
    member = make_member(store, state="MA")

    assert ("OutsideContactHours", True, 0) == _refusal(store, _input(member), now=NIGHT_NY)


def test_phone_call_outside_contact_hours_is_refused(store):
    """Phone calls are bound by the contact hours too."""
    member = make_member(store, state="MA")

    assert ("OutsideContactHours", True, 0) == _refusal(store, _input(member, channel="phone"), now=NIGHT_NY)


def test_contact_hours_are_member_local(store):
    """21:30 in New York is 18:30 for a California member: the SMS is recorded."""
    member = make_member(store, state="CA")

    assert True is send_outreach(store, _input(member), now=NIGHT_NY).created


def test_letter_at_night_is_recorded(store):
    """A letter is not a call or text: no contact-hours refusal at night."""
    member = make_member(store)
    result = send_outreach(store, _input(member, channel="letter"), now=NIGHT_NY)
    comm = store.get("Communication", result.reference.split("/")[1])

    assert (True, "MAILWRIT") == (result.created, comm["medium"][0]["coding"][0]["code"])


def test_sms_without_mobile_number_is_no_contact_point(store):
    """An SMS to a member without a phone is refused with NoContactPoint."""
    member = make_member(store, phone_use=None)

    assert ("NoContactPoint", True, 0) == _refusal(store, _input(member, channel="sms"))


def test_sms_to_landline_is_no_contact_point(store):
    """A home (landline) number cannot take an SMS: NoContactPoint."""
    member = make_member(store, phone_use="home")

    assert ("NoContactPoint", True, 0) == _refusal(store, _input(member, channel="sms"))


def test_email_without_address_is_no_contact_point(store):
    """An email to a member with no email address is refused with NoContactPoint."""
    member = make_member(store)

    assert ("NoContactPoint", True, 0) == _refusal(store, _input(member, channel="email"))


def test_sms_over_160_characters_is_refused(store):
    """An SMS longer than 160 characters is refused with ContactNotAllowed."""
    member = make_member(store)

    assert ("ContactNotAllowed", True, 0) == _refusal(store, _input(member, message="x" * 161))


def test_unknown_member_is_member_not_found(store):
    """Outreach to an unknown member raises MemberNotFound."""
    data = SendOutreachInput(
        member_id="pt-none", encounter_id="enc-none", idempotency_key="k",
        arguments=SendOutreachArgs(channel="sms", template="follow-up-reminder", message=MESSAGE),
        contact_window_start=time(8), contact_window_end=time(21),
    )

    assert ("MemberNotFound", True, 0) == _refusal(store, data)


def test_a_second_run_for_the_member_on_the_same_day_folds_into_the_first_contact(store):
    """Another run's message to the same member on the same member-local day is not recorded: the tool
    returns the Communication already sent today (created False). Before: two Communications, two SMS."""
    member = make_member(store)
    first = send_outreach(store, _input(member, key="wf-1/a2-check-in"), now=NOON_NY)
    second = send_outreach(store, _input(member, key="wf-2/a2-check-in"), now=NOON_NY.replace(minute=1))

    assert ((True, False), first.reference, 1) == (
        (first.created, second.created), second.reference, store.count("Communication"))


def test_the_next_member_local_day_is_a_new_contact_and_each_run_finds_its_own_again(store):
    """The limit is per member-local day: the next day's message is recorded; a retry of either run
    returns that run's own Communication (idempotent by id), not the other day's."""
    member = make_member(store, state="MA")
    today = send_outreach(store, _input(member, key="wf-1/a2"), now=NOON_NY)
    tomorrow = send_outreach(store, _input(member, key="wf-2/a2"), now=NOON_NY.replace(day=12))
    retried = send_outreach(store, _input(member, key="wf-1/a2"), now=NOON_NY.replace(day=12))

    assert (True, 2, today.reference) == (tomorrow.created, store.count("Communication"), retried.reference)
    assert today.reference != tomorrow.reference


def test_the_contact_day_is_the_members_own_day(store):
    """At 01:30 UTC it is still the previous day in California: a message then and one at noon Pacific the
    previous day are the same day for the member (one Communication)."""
    member = make_member(store, state="CA")
    evening = send_outreach(store, _input(member, key="wf-1/a2"), now=NIGHT_NY)           # 18:30 PDT, June 11
    noon = send_outreach(store, _input(member, key="wf-2/a2"), now=datetime(2024, 6, 11, 19, 0, tzinfo=UTC))

    assert (False, evening.reference, 1) == (noon.created, noon.reference, store.count("Communication"))


def test_a_folded_message_says_what_it_folded_into(store):
    """The second run's result names the Communication it folded into (the run then reports it folded, not
    sent); the first run's own result, and a retry of it, name nothing folded. Before: no such field."""
    member = make_member(store)
    first = send_outreach(store, _input(member, key="wf-1/a2-check-in"), now=NOON_NY)
    second = send_outreach(store, _input(member, key="wf-2/a2-check-in"), now=NOON_NY.replace(minute=1))
    retried = send_outreach(store, _input(member, key="wf-1/a2-check-in"), now=NOON_NY.replace(minute=2))

    assert (None, first.reference, None) == (first.folded_into, second.folded_into, retried.folded_into)
    assert "folded_into" not in first.model_dump()  # older histories' results keep their shape


def test_an_address_less_members_contact_day_is_the_plans_date(store):
    """At 06:30 UTC it is 23:30 the previous day in Los Angeles and 02:30 in New York: with a Pacific plan an
    address-less member's contact day is the Pacific date (before: the New York one)."""
    member = make_member(store, state=None)
    data = _input(member, key="wf-9/a2").model_copy(update={"contact_window_start": time(0),
                                                              "contact_window_end": time.max})
    sent = send_outreach(store, data, now=datetime(2024, 6, 12, 6, 30, tzinfo=UTC), default_zone="America/Los_Angeles")
    pacific_day = store.by_idempotency_key(contact_day_key(member.member_id, date(2024, 6, 11)))

    assert (f"Communication/{pacific_day['id']}", None) == (sent.reference, store.by_idempotency_key(
        contact_day_key(member.member_id, date(2024, 6, 12))))
