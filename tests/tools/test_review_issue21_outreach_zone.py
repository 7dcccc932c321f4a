"""Review of issue 21: the guardrail and send_outreach must agree on a member's zone (fixed).

lookup_member gives the guardrails the plan's zone (settings.plan_time_zone) for a member whose address names no
zone; send_outreach calls member_time_zone(patient) with the module default (America/New_York) instead. With a
Pacific plan, at 18:30 Pacific the guardrail sees an open window and the tool refuses (21:30 Eastern): the graph
defers the message by one minute (agents/outreach_graph.py _next_opening) and tries again, every minute until 21:00
Pacific; the contact-day key is also the Eastern date. The worker now passes settings.plan_time_zone to
send_outreach (tools/activities.py); tests/workflows/test_folded_outreach.py checks it through a run.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from tests.fhir_factory import make_member
from tools.deadlines import next_contact_time
from tools.member import LookupMemberInput, lookup_member
from tools.outreach import SendOutreachArgs, SendOutreachInput, contact_day_key, send_outreach

PLAN_ZONE = "America/Los_Angeles"
EVENING_PACIFIC = datetime(2024, 6, 12, 1, 30, tzinfo=UTC)  # 18:30 PDT, 21:30 EDT


def test_send_outreach_uses_the_zone_the_guardrail_used(store) -> None:
    """Given the plan's zone (as the worker gives it, tools/activities.py), the tool agrees with the guardrail:
    at 18:30 Pacific an address-less member of a Pacific plan is messaged, on the Pacific date."""
    member = make_member(store, state=None)  # no address: the plan's zone stands in
    profile = lookup_member(store, LookupMemberInput(member_id=member.member_id, encounter_id=member.encounter_id),
                            salt="s", today=EVENING_PACIFIC.date(), default_zone=PLAN_ZONE)
    assert (PLAN_ZONE, None) == (profile.time_zone, next_contact_time(
        EVENING_PACIFIC, profile.time_zone, start=time(8), end=time(21)))  # the guardrail: window open

    data = SendOutreachInput(
        member_id=member.member_id, encounter_id=member.encounter_id, idempotency_key="wf-zone#a2-check-in",
        arguments=SendOutreachArgs(channel="sms", template="post-discharge-check-in", message="Checking in."),
        contact_window_start=time(8), contact_window_end=time(21))
    sent = send_outreach(store, data, now=EVENING_PACIFIC, default_zone=PLAN_ZONE)  # before: OutsideContactHours
    assert sent.created
    stored = store.by_idempotency_key(contact_day_key(member.member_id, date(2024, 6, 11)))  # the Pacific date
    assert sent.reference == f"Communication/{stored['id']}"
