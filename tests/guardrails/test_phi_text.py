"""guardrails.phi_text: the member's own identifiers in any common format, identifier patterns, and the texts the
planner writes (the approved template, a rationale with an ISO due date) left alone."""

from __future__ import annotations

import pytest

from agents.offline_planner import CHECK_IN_MESSAGE
from guardrails.phi_text import member_identifiers, phi_in_text

PATIENT = {
    "resourceType": "Patient", "id": "mbr-test-42",
    "name": [{"family": "Vrellquist", "given": ["Ozymandra", "Jo"]}], "birthDate": "1931-07-19",
    "identifier": [{"type": {"text": "MRN"}, "value": "MRN-CNRY-55213"}, {"value": "mbr-test-42"}],
    "telecom": [{"system": "phone", "value": "617-555-0199"}, {"system": "email", "value": "oz.v@canary.example"}],
    "address": [{"line": ["77 Canaryfield Way"], "city": "Boston", "state": "MA", "postalCode": "02118-1234"}],
}
MEMBER = member_identifiers(PATIENT)


@pytest.mark.parametrize(("text", "kind"), [
    ("Hello Ozymandra, we are checking in.", "the member's name"),
    ("Call MRS VRELLQUIST today", "the member's name"),
    ("Born 1931-07-19.", "the member's birth date"),
    ("dob 07/19/1931", "the member's birth date"),
    ("7/19/31", "the member's birth date"),
    ("19.07.1931", "the member's birth date"),
    ("July 19th, 1931", "the member's birth date"),
    ("19 Jul 1931", "the member's birth date"),
    ("record MRN-CNRY-55213 updated", "the member's MRN or other identifier"),
    ("call (617) 555 0199", "the member's phone number"),
    ("write to OZ.V@canary.example", "the member's e-mail address"),
    ("visit 77 canaryfield  way", "the member's address"),
    ("ZIP 02118", "the member's address"),
    ("SSN 123-45-6789", "an SSN"),
    ("call 212-555-0100", "a phone number"),
    ("mail someone@else.example", "an e-mail address"),
    ("date of birth: 03/04/1950", "a date of birth"),
    ("member number 1234567", "an identifier-like number"),
    ("MRN 9988", "an MRN"),
])
def test_each_identifier_is_found_in_any_common_format(text: str, kind: str) -> None:
    """Each phrasing carries the identifier it is named after."""
    assert kind in phi_in_text(text, MEMBER)


@pytest.mark.parametrize("text", [
    CHECK_IN_MESSAGE,
    "Interactive post-discharge contact (TCM): call the member, review medications and confirm the follow-up visit",
    "TCM contact is due by 2026-03-05T17:00:00+00:00 after the discharge.",
    "Call mbr-test-42 within 2 business days to review medications",  # the record id: how staff find the member
    "Follow-up visit within 7 days",
])
def test_the_planners_own_texts_name_nobody(text: str) -> None:
    """The approved texts, a rationale citing an ISO due date and the member's record id raise nothing."""
    assert [] == phi_in_text(text, MEMBER)


def test_findings_name_kinds_never_values() -> None:
    """What is returned is shown to reviewers and logged: kinds only."""
    found = phi_in_text("Ozymandra Vrellquist, born 07/19/1931, MRN-CNRY-55213, 617-555-0199", MEMBER)
    assert ["the member's name", "the member's birth date", "the member's MRN or other identifier",
            "the member's phone number"] == found
    assert not any(v in " ".join(found) for v in ("Ozymandra", "1931", "55213", "0199"))


def test_without_the_members_identifiers_the_patterns_still_apply() -> None:
    """No Patient record: a name goes unnoticed, an SSN does not."""
    assert ["an SSN"] == phi_in_text("Ozymandra, SSN 123-45-6789", None)


def test_identifiers_are_read_from_every_part_of_the_patient() -> None:
    """Names (all given names and the family), the birth date, identifiers except the record id, phones, e-mails,
    address lines and the five-digit ZIP code."""
    assert ("Ozymandra", "Jo", "Vrellquist") == MEMBER.names
    assert "1931-07-19" == MEMBER.birth_date.isoformat()
    assert ("MRN-CNRY-55213",) == MEMBER.identifiers
    assert (("617-555-0199",), ("oz.v@canary.example",)) == (MEMBER.phones, MEMBER.emails)
    assert (("77 Canaryfield Way",), ("02118",)) == (MEMBER.address_lines, MEMBER.postal_codes)
