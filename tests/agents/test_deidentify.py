"""De-identification before the model, and re-identification of its answer."""

from __future__ import annotations

import json

from agents.deidentify import Deidentifier

RECORD = {
    "member": {"member_id": "pt-ZQX-4471", "pseudonym": "mbr-a1b2c3d4e5f6", "age_years": 93,
               "name": "Quillon Vantrebb", "channels": ["sms"]},
    "clinical": {"member_id": "pt-ZQX-4471", "stay": {"encounter_id": "enc-991", "admitted_at": "2024-03-02T10:00:00Z",
                                                      "discharged_at": "2024-03-05T16:30:00+00:00"}},
    "note": "call 617-555-0147 or mail quillon.v@example.org about pt-ZQX-4471, MRN: 88-1234",
    "condition_codes": ["I50.9"],
}


def test_safe_harbor_tokenises_identifiers_dates_contacts_and_old_ages() -> None:
    deid = Deidentifier("safe-harbor")
    sent = json.dumps(deid.redact(RECORD))
    for value in ("pt-ZQX-4471", "mbr-a1b2c3d4e5f6", "Quillon", "enc-991", "2024-03-0", "617-555-0147",
                  "quillon.v@example.org", "88-1234", "93"):
        assert value not in sent, value
    redacted = deid.redact(RECORD)
    assert redacted["member"]["member_id"] == redacted["clinical"]["member_id"]  # stable tokens
    assert "90+" == redacted["member"]["age_years"]
    assert ["I50.9"] == redacted["condition_codes"]  # codes are not identifiers


def test_tokens_in_the_answer_map_back_to_the_original_values() -> None:
    deid = Deidentifier("safe-harbor")
    redacted = deid.redact(RECORD)
    answer = json.dumps({"description": f"Call {redacted['member']['member_id']}",
                         "due": redacted["clinical"]["stay"]["discharged_at"], "other": "[DATE_99]"})
    restored = deid.restore(json.loads(answer))
    assert "Call pt-ZQX-4471" == restored["description"]
    assert "2024-03-05T16:30:00+00:00" == restored["due"]
    assert "[DATE_99]" == restored["other"]  # an invented token stays as it is (and then fails validation)


def test_limited_data_set_keeps_dates_and_ages_but_not_identifiers() -> None:
    deid = Deidentifier("limited-data-set")
    redacted = deid.redact(RECORD)
    assert "2024-03-02T10:00:00Z" == redacted["clinical"]["stay"]["admitted_at"]
    assert 93 == redacted["member"]["age_years"]
    sent = json.dumps(redacted)
    for value in ("pt-ZQX-4471", "Quillon", "617-555-0147", "quillon.v@example.org"):
        assert value not in sent


def test_a_known_identifier_quoted_in_free_text_is_tokenised() -> None:
    deid = Deidentifier()
    deid.redact({"member_id": "pt-ZQX-4471"})
    assert "see [MEMBER_1] today" == deid.redact_text("see pt-ZQX-4471 today")


def test_nested_identifiers_camel_case_keys_bare_phone_numbers_and_dates_in_text() -> None:
    deid = Deidentifier("safe-harbor")
    sent = json.dumps(deid.redact({
        "identifier": [{"system": "urn:mrn", "value": "A778812"}], "memberId": "pt-9", "postalCode": "02139",
        "note": "seen 2024-03-05, call 6175550147 or +1 (617) 555-0148",
    }))
    for value in ("A778812", "pt-9", "02139", "2024-03-05", "6175550147", "555-0148"):
        assert value not in sent, value


def test_a_token_is_never_rewritten_inside_another_token() -> None:
    deid = Deidentifier()
    deid.redact({"member_id": "MEMBER"})
    assert "[MEMBER_1] and [MEMBER_1]" == deid.redact_text("MEMBER and [MEMBER_1]")
