"""``send_outreach``: a Communication to the member on the preferred channel.

Recorded in the care records store, not delivered (no messaging gateway is
configured). The tool re-checks what the guardrails checked, because it is
the last line before a member is contacted: opt-out, the channel's contact
point, TCPA hours in the member's time zone, and the 160-character SMS limit.

The Communication's FHIR status is ``in-progress`` (R4 event status: the
message is under way, not known to have reached the member) until a delivery
receipt marks it ``completed``; careloom has no gateway yet, so nothing does.

**One contact per member per day in this program.** Two runs for one member
(two stays ending the same day, or a stay and a readmission) would each send
their check-in minutes apart. Each Communication is written under the key
``contact-day/post-discharge-outreach/<member>/<member-local date>``, whose
unique constraint in the store admits one per day even for two runs at the
same instant on two workers: the second run's message folds into the first
(the tool returns the Communication already sent today, ``created`` False
and ``folded_into`` naming it, and logs ``outreach.folded``); nothing second
is sent, and the run reports its action ``folded``, not ``executed``. A run
finds its own Communication again by its deterministic id, so a retry is
still idempotent.

**The member's zone is the one the guardrail used**: the address's zone, else
the plan's (``default_zone``, which the worker passes from
``settings.plan_time_zone`` as it does to ``lookup_member``). With any other
default the tool and the guardrail disagree about the hour for an address-less
member: the guardrail sees an open window, the tool refuses, the run defers a
minute and tries again, every minute, and the contact day is the wrong date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog
from pydantic import BaseModel, Field

from store.records import CareRecordStore
from tools.deadlines import next_contact_time
from tools.errors import (
    CONTACT_BUDGET_SPENT,
    CONTACT_NOT_ALLOWED,
    MEMBER_NOT_FOUND,
    NO_CONTACT_POINT,
    OUTSIDE_CONTACT_HOURS,
    tool_error,
)
from tools.member import DEFAULT_TIME_ZONE, Channel, contact_points, is_deceased, is_opted_out
from tools.time_zones import resolve_member_zone
from tools.writes import ServiceEffect, SignedApproval, WriteResult, resource_id

__all__ = ["CONTACT_CATEGORIES", "PROGRAM", "SendOutreachArgs", "SendOutreachInput", "contact_day_key",
           "member_contacts", "send_outreach"]

log = structlog.get_logger(__name__)

PROGRAM = "post-discharge-outreach"

_MEDIUM = {
    "sms": ("WRITTEN", "SMS text message"),
    "phone": ("PHONE", "telephone"),
    "email": ("EMAILWRIT", "email"),
    "letter": ("MAILWRIT", "mailed letter"),
}
_TIMED_CHANNELS = {"sms", "phone"}  # TCPA governs calls and texts


class SendOutreachArgs(BaseModel):
    """A member-facing message; no marketing or billing content."""

    tool: Literal["send_outreach"] = "send_outreach"
    channel: Channel
    template: Literal["post-discharge-check-in", "follow-up-reminder"]
    message: str = Field(min_length=3, max_length=1000)

    def effect(self) -> ServiceEffect:
        """What the action declares it does to the member's services: nothing (its text is the guardrails')."""
        return "none"


class SendOutreachInput(BaseModel):
    member_id: str
    encounter_id: str
    idempotency_key: str
    arguments: SendOutreachArgs
    approved_by: str | None = None
    approval: SignedApproval | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signed decisions that approved this exact action; the worker verifies them before it writes."))
    contact_window_start: time
    contact_window_end: time
    sms_max_chars: int = 160
    program: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The program sending it when not post-discharge outreach (e.g. care-gap closure): its category, and the "
        "message is then about the member, not an Encounter (``encounter_id`` is not a stay). Such a message has "
        "a lower priority than post-discharge outreach: it waits for room in the member's contact budget."))
    max_contacts_per_week: int = Field(default=3, ge=1, exclude_if=lambda v: v == 3, description=(
        "The plan's frequency cap across programs (GuardrailPolicy.max_contacts_per_week)."))


def build_communication(data: SendOutreachInput, sent_at: datetime) -> dict[str, Any]:
    code, display = _MEDIUM[data.arguments.channel]
    episode = ({"encounter": {"reference": f"Encounter/{data.encounter_id}"}} if data.program is None else {})
    return {
        "resourceType": "Communication",
        "id": resource_id(data.idempotency_key, "communication"),
        # Handed over, not known delivered: "completed" only once a delivery receipt says so (FHIR R4).
        "status": "in-progress",
        "category": [{"text": data.program or "post-discharge outreach"}],
        "medium": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
                                "code": code}], "text": display}],
        "subject": {"reference": f"Patient/{data.member_id}"},
        "recipient": [{"reference": f"Patient/{data.member_id}"}],
        **episode,
        "topic": {"text": data.arguments.template},
        "sent": sent_at.isoformat(),
        "payload": [{"contentString": data.arguments.message}],
        "note": [{"text": "Recorded by careloom; not delivered (no messaging gateway configured): in-progress "
                           "until a delivery receipt arrives."}],
    }


def contact_day_key(member_id: str, day: date, program: str = PROGRAM) -> str:
    """The store key that admits one Communication per member and member-local day in a program."""
    return f"contact-day/{program}/{member_id}/{day.isoformat()}"


CONTACT_CATEGORIES = frozenset({"post-discharge outreach", "care-gap closure"})
"""``Communication.category`` texts of careloom's messages to members (what the contact budget counts, with the
prior-authorization notices, :data:`NOTICE_CATEGORY`)."""
NOTICE_CATEGORY = "urn:careloom:notice-kind"  # = tools.notice.NOTICE_CATEGORY_SYSTEM (notices are contacts too)


def member_contacts(store: CareRecordStore, member_id: str, since: datetime) -> list[datetime]:
    """When careloom contacted the member since ``since``, in any program: its messages and its notices, from the
    records store (not from any one run's state)."""
    return contacts_in(store.find_for_member("Communication", member_id), since)


def contacts_in(communications: list[dict[str, Any]], since: datetime) -> list[datetime]:
    """When careloom's messages and notices among ``communications`` were sent, since ``since``, in order."""
    sent = []
    for communication in communications:
        categories = communication.get("category") or []
        ours = any(c.get("text") in CONTACT_CATEGORIES or any(
            coding.get("system") == NOTICE_CATEGORY for coding in c.get("coding") or []) for c in categories)
        if not ours or communication.get("status") == "entered-in-error" or not communication.get("sent"):
            continue
        at = datetime.fromisoformat(communication["sent"])
        if at >= since:
            sent.append(at)
    return sorted(sent)


def _check_budget(contacts: list[datetime], data: SendOutreachInput, now: datetime, zone: str) -> None:
    """A lower-priority message (``program`` set) waits while the member was contacted today (member-local) or
    ``max_contacts_per_week`` times in the last 7 days, by any program (``contacts``: the last 7 days')."""
    today = now.astimezone(ZoneInfo(zone)).date()
    if any(at.astimezone(ZoneInfo(zone)).date() == today for at in contacts):
        raise tool_error(CONTACT_BUDGET_SPENT, "the member was already contacted today; a lower-priority message "
                                               "waits for another day")
    if len(contacts) >= data.max_contacts_per_week:
        raise tool_error(CONTACT_BUDGET_SPENT, f"the member was contacted {len(contacts)} time(s) in the last 7 days"
                                               f" (the plan's cap is {data.max_contacts_per_week}); this message "
                                               "waits for room")


def contact_lock(member_id: str) -> str:
    """The lock every message to one member is written under: budget checks and writes are serialised per member."""
    return f"member-contacts/{member_id}"


def send_outreach(store: CareRecordStore, data: SendOutreachInput, *, now: datetime,
                  default_zone: str = DEFAULT_TIME_ZONE) -> WriteResult:
    """Record the message, or refuse with why; ``default_zone``: the plan's zone (see the module docstring)."""
    own_id = resource_id(data.idempotency_key, "communication")
    # By id, not by key: the Communication is stored under its contact-day key (and older ones under the run's).
    if (existing := store.get("Communication", own_id)) is not None:
        return WriteResult(reference=f"Communication/{existing['id']}", created=False)
    patient = store.get("Patient", data.member_id)
    if patient is None:
        raise tool_error(MEMBER_NOT_FOUND, f"no Patient with id {data.member_id!r} in the care records store")
    if is_deceased(patient):
        raise tool_error(CONTACT_NOT_ALLOWED, "the member is recorded as deceased; nothing was sent")
    if is_opted_out(store.find_for_member("Consent", data.member_id)):
        raise tool_error(CONTACT_NOT_ALLOWED, "the member has opted out of outreach; nothing was sent")
    channel = data.arguments.channel
    zone = resolve_member_zone(patient, default_zone=default_zone, on=now.astimezone(UTC).date()).zone
    if channel not in contact_points(patient):
        raise tool_error(NO_CONTACT_POINT, f"the member has no contact point for channel {channel!r}")
    if channel == "sms" and len(data.arguments.message) > data.sms_max_chars:
        raise tool_error(CONTACT_NOT_ALLOWED, f"an SMS must be at most {data.sms_max_chars} characters")
    if channel in _TIMED_CHANNELS:
        opening = next_contact_time(now, zone, start=data.contact_window_start, end=data.contact_window_end)
        if opening is not None:
            raise tool_error(OUTSIDE_CONTACT_HOURS, f"outside TCPA contact hours; next opening {opening.isoformat()}")
    week_ago = now - timedelta(days=7)

    def guard(find: Callable[[str, str], list[dict[str, Any]]]) -> None:
        # Again inside the write's transaction, under the member's lock: two hosts sending to one member at the
        # same moment (or across a day boundary) cannot both find room in the budget.
        _check_budget(contacts_in(find("Communication", data.member_id), week_ago), data, now, zone)

    if data.program is not None:
        _check_budget(member_contacts(store, data.member_id, week_ago), data, now, zone)  # early, with the reason
    day = now.astimezone(ZoneInfo(zone)).date()
    stored, created = store.create_once_guarded([build_communication(data, now)],
                                                contact_day_key(data.member_id, day, data.program or PROGRAM),
                                                lock=contact_lock(data.member_id),
                                                guard=guard if data.program is not None else None)
    reference = f"Communication/{stored[0]['id']}"
    if not created and stored[0]["id"] != own_id:
        # Another run (or another action of this one) contacted the member today: fold into that contact, and
        # say so, so the run does not report this message as sent (nothing of this action's went out).
        log.info("outreach.folded", folded_into=reference, channel=channel)
        return WriteResult(reference=reference, created=False, folded_into=reference)
    return WriteResult(reference=reference, created=created)
