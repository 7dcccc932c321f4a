"""guardrails.phi_text: the member's own identifiers in any common format and spelling, identifier patterns, and the
texts the planner writes (the approved template, a rationale with an ISO due date) left alone."""

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


# A member whose identifiers come in other spellings (review of issue 21): an accented given name, a hyphenated
# surname with an apostrophe, a street suffix, a city and a county.
OTHER = member_identifiers({
    "resourceType": "Patient", "id": "mbr-review-21",
    "name": [{"family": "O\u2019Brien-Vrellquist", "given": ["Jos\u00e9"]}], "birthDate": "1941-07-04",
    "address": [{"line": ["123 North Canaryfield Street Apt 4"], "city": "Quillbrook", "district": "Tamsworth County",
                 "state": "CA", "postalCode": "94103-1234"}],
})


@pytest.mark.parametrize(("text", "kind"), [
    ("Hi Jose, checking in.", "the member's name"),                          # accent dropped
    ("Hi JOS\u00c9", "the member's name"),                                     # accent kept, upper case
    ("Hi Jos\u200b\u00e9, checking in.", "the member's name"),                 # zero-width space inside
    ("Hi Jo\u00adse", "the member's name"),                                    # soft hyphen inside
    ("Hi \uff2a\uff4f\uff53\uff45", "the member's name"),                        # full-width letters
    ("Mr O'Brien, please call us back.", "the member's name"),               # half of the hyphenated surname
    ("Mr OBrien called", "the member's name"),                               # apostrophe dropped
    ("Mr O Brien called", "the member's name"),                              # a piece of 3+ letters
    ("Dear Ms Vrellquist", "the member's name"),                             # the other half
    ("We will visit you at 123 Canaryfield St.", "the member's address"),    # the line without N and Apt
    ("We will visit you at 123 N. Canaryfield St., #4", "the member's address"),
    ("visit 123 north canaryfield street", "the member's address"),
    ("on Canaryfield Street", "the member's address"),                       # no house number
    ("She lives in Quillbrook.", "the member's city or county"),
    ("TAMSWORTH COUNTY clinic", "the member's city or county"),
    ("Birthday 4 Jul 41 on file.", "the member's birth date"),                # day-first, two-digit year
    ("04-JUL-1941", "the member's birth date"),
    ("Jul 4, 41", "the member's birth date"),
    ("SSN 123 45 6789", "an SSN"),
    ("ssn 123.45.6789", "an SSN"),
    ("ssn 123 - 45 - 6789", "an SSN"),
    ("A 92-year-old member", "an age over 89"),
    ("92 years old", "an age over 89"),
    ("age 93", "an age over 89"),
    ("aged: 101", "an age over 89"),
    ("95 y/o", "an age over 89"),
    ("91 years of age", "an age over 89"),
    ("a woman in her 90s", "an age over 89"),
])
def test_other_spellings_of_the_same_identifier_are_found(text: str, kind: str) -> None:
    """Accents, invisible characters, compatibility forms, parts of a compound surname, USPS abbreviations,
    two-digit years, separated SSNs and ages over 89 (Safe Harbor) are the identifier they spell."""
    assert kind in phi_in_text(text, OTHER)


@pytest.mark.parametrize("text", [
    "Call O today",                           # a one-letter piece of the surname matches nothing
    "Canaryfield Farms Market",               # the street name alone, without suffix or number
    "Visit St. Mary's clinic on Main St",      # another street, and "St" as Saint
    "Follow-up in 90 days; age 65",           # 90 that is not an age, an age under 90
    "Reduce PT to 2 visits a week",
    "Schedule the follow-up on May 5, 24 minutes before the call",
])
def test_near_misses_are_not_findings(text: str) -> None:
    """Pieces shorter than 3 letters, another street, numbers that are not ages or dates: no false alarm."""
    assert [] == phi_in_text(text, OTHER)


def test_a_city_that_is_an_ordinary_word_counts_only_with_its_state() -> None:
    """"Mobile" is a city and a word: "mobile phone" names nobody, "Mobile, AL" names where the member lives."""
    member = member_identifiers({"address": [{"city": "Mobile", "state": "AL"}]})
    assert [] == phi_in_text("Confirm the member's mobile phone number.", member)
    assert ["the member's city or county"] == phi_in_text("The member moved to Mobile, AL.", member)
    assert ["the member's city or county"] == phi_in_text("in Mobile Alabama", member)


def test_the_forms_of_a_compound_name_keep_pieces_of_three_letters_or_more() -> None:
    """The folded name is kept whole; its pieces are found, and "O" (one letter) is not one of them."""
    assert ("Jose", "O'Brien-Vrellquist") == OTHER.names
    assert ("Quillbrook", "Tamsworth County") == OTHER.cities
    assert [] == phi_in_text("Plan O: call back", OTHER)


def test_the_record_id_never_counts_as_the_name_it_shares_a_piece_with() -> None:
    """A record id made from the same words as a hyphenated surname ("pt-test-...-model-own-words-1" for a family
    name "Canary...-model-own-words-1", as the evaluation's synthetic members have) is how staff find the member;
    the whole name still counts; digit-only and lower-case pieces never do."""
    member = member_identifiers({"resourceType": "Patient", "id": "pt-test-ev5e-821-model-own-words-1",
                                 "name": [{"family": "Canaryev5e-821-model-own-words-1", "given": ["Testy"]}]})
    assert [] == phi_in_text("Call pt-test-ev5e-821-model-own-words-1 within 2 business days", member)
    assert [] == phi_in_text("Reduce to 821 units; the model says", member)  # digits, and a lower-case piece
    assert ["the member's name"] == phi_in_text("Canaryev5e-821-model-own-words-1", member)  # the whole name
