"""Tests for guardrails.policy: the typed, versioned, frozen guardrail policy."""

from __future__ import annotations

from datetime import time

import pytest
from pydantic import ValidationError

from guardrails.policy import GuardrailPolicy


def test_policy_id_is_version_and_content_hash():
    """policy_id is ``version#<10 hex digits>``."""
    policy_id = GuardrailPolicy().policy_id
    version, digest = policy_id.split("#")

    assert ("outreach-policy/1", 10, True) == (version, len(digest), all(c in "0123456789abcdef" for c in digest))


def test_equal_content_gives_equal_policy_id():
    """Two policies with the same content carry the same policy_id (stable across processes)."""
    assert GuardrailPolicy().policy_id == GuardrailPolicy(high_risk_lace=10).policy_id


@pytest.mark.parametrize("override", [
    {"high_risk_lace": 12},
    {"min_confidence": 0.8},
    {"contact_window_start": time(9)},
    {"sms_max_chars": 140},
    {"adverse_approver": "rn"},
    {"marketing_terms": ("offer",)},
])
def test_changing_any_rule_changes_policy_id(override):
    """Any change of a threshold or rule gives a different policy_id, even under the same version label."""
    assert GuardrailPolicy().policy_id != GuardrailPolicy(**override).policy_id


def test_policy_is_frozen():
    """A run's policy cannot be changed in place."""
    policy = GuardrailPolicy()

    with pytest.raises(ValidationError):
        policy.high_risk_lace = 5


def test_unknown_setting_is_refused():
    """A misspelt setting fails at construction instead of being ignored."""
    with pytest.raises(ValidationError, match="high_risk_lac"):
        GuardrailPolicy(high_risk_lac=12)


def test_contact_window_must_end_after_it_starts():
    """A window whose end is not after its start is refused."""
    with pytest.raises(ValidationError, match="contact_window_end must be after contact_window_start"):
        GuardrailPolicy(contact_window_start=time(21), contact_window_end=time(8))


def test_defaults_encode_tcpa_window_and_sms_limit():
    """Defaults: contact 08:00-21:00 member-local, SMS at most 160 characters, LACE >= 10 is high risk."""
    policy = GuardrailPolicy()

    assert ("08:00-21:00", 160, 10, "md") == (
        policy.contact_window_label, policy.sms_max_chars, policy.high_risk_lace, policy.adverse_approver)
