"""``lookup_member``: what outreach needs to know about a member, and nothing more.

Minimum necessary (45 CFR 164.502(b)): no name, no date of birth, no address,
no phone number leaves this tool; only age in years, the channels that exist,
the preferred one, the time zone (from the address: see :mod:`tools.time_zones`;
where it came from, never the state or ZIP itself), opt-out and deceased flags.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from store.records import CareRecordStore, member_of
from tools.clinical import parse_instant
from tools.errors import MEMBER_NOT_FOUND, tool_error
from tools.time_zones import (
    DEFAULT_TIME_ZONE,
    GAP_TEXT,
    TimeZoneGap,
    TimeZoneSource,
    member_time_zone,
    resolve_member_zone,
    time_zone_for_state,
)

__all__ = [
    "DEFAULT_TIME_ZONE",
    "Channel",
    "LookupMemberInput",
    "MemberProfile",
    "contact_points",
    "is_deceased",
    "is_opted_out",
    "lookup_member",
    "member_time_zone",
    "pseudonym",
    "time_zone_for_state",
]

Channel = Literal["sms", "phone", "email", "letter"]


def salted_digest(text: str, salt: str) -> str:
    """HMAC-SHA256 of ``text`` under ``salt``, hex: stable, and not reversible without the salt."""
    return hmac.new(salt.encode(), text.encode(), hashlib.sha256).hexdigest()


def pseudonym(member_id: str, salt: str) -> str:
    """A stable, salted pseudonym for summaries and search attributes (not reversible)."""
    return f"mbr-{salted_digest(member_id, salt)[:12]}"


class LookupMemberInput(BaseModel):
    member_id: str = Field(description="Patient.id in the care records store.")
    encounter_id: str | None = Field(default=None, description=(
        "The run's index Encounter: ages are given as of its discharge (else its admission); None: as of today."))


class MemberProfile(BaseModel):
    """The outreach view of a member (minimum necessary)."""

    member_id: str
    pseudonym: str
    age_years: int | None = Field(description=(
        "Age in whole years on ``age_as_of`` (the discharge date of the run's stay); None if unknown."))
    age_as_of: date | None = Field(default=None, description=(
        "The day the age is counted on: the discharge date (member-local), or the lookup day without a stay; "
        "None in profiles recorded before this field (then: the lookup day)."))
    deceased: bool
    preferred_language: str | None = Field(default=None, description="BCP-47 code, e.g. en-US.")
    time_zone: str = Field(description="IANA zone used for TCPA contact hours.")
    time_zone_known: bool = Field(description="False when the zone is a default, not from an address.")
    time_zone_source: TimeZoneSource | None = Field(default=None, description=(
        "Where the zone came from: the address ZIP code, the address state, or the plan's zone; None in "
        "profiles recorded before this field."))
    time_zone_gap: TimeZoneGap | None = Field(default=None, description=(
        "Why the plan's zone stands in for the member's (no address, an unrecognised state...); None when "
        "the address gave the zone."))
    channels: list[Channel] = Field(description="Channels the member can be reached on.")
    preferred_channel: Channel | None
    opted_out: bool = Field(description="An active Consent denies automated outreach.")

    @property
    def time_zone_basis(self) -> str:
        """Where the zone came from, for a reviewer: "address ZIP code", "address state", or the plan's zone
        and why (e.g. "plan zone America/New_York: no address on file")."""
        if self.time_zone_source == "zip":
            return "address ZIP code"
        if self.time_zone_source == "state" or (self.time_zone_source is None and self.time_zone_known):
            return "address state"
        if self.time_zone_gap is None:  # a profile recorded before the reasons existed: its words then
            return "no address state"
        return f"plan zone {self.time_zone}: {GAP_TEXT[self.time_zone_gap]}"


def contact_points(patient: dict[str, Any], on: date | None = None) -> dict[Channel, str]:
    """Channel → contact value (phone number, email) from Patient.telecom; mobile phones allow sms.

    A telecom whose period ended before ``on`` (default today) is no longer in use.
    """
    today = (on or datetime.now(UTC).date()).isoformat()
    found: dict[Channel, str] = {}
    ranked = sorted(patient.get("telecom") or [], key=lambda t: t.get("rank", 99))
    for telecom in ranked:
        value, system, use = telecom.get("value"), telecom.get("system"), telecom.get("use")
        ended = (telecom.get("period") or {}).get("end")
        if not value or (ended and ended[:10] < today):
            continue
        if system == "phone":
            if use == "mobile":
                found.setdefault("sms", value)
            found.setdefault("phone", value)
        elif system == "sms":
            found.setdefault("sms", value)
        elif system == "email":
            found.setdefault("email", value)
    if patient.get("address"):
        found.setdefault("letter", "home address on file")
    return found


def is_deceased(patient: dict[str, Any]) -> bool:
    """Patient.deceased[x] is set (a flag or a date of death)."""
    return bool(patient.get("deceasedBoolean")) or bool(patient.get("deceasedDateTime"))


def is_opted_out(consents: list[dict[str, Any]]) -> bool:
    """True if an active Consent whose provision is ``deny`` covers outreach communication."""
    for consent in consents:
        if consent.get("status") != "active":
            continue
        provision = consent.get("provision") or {}
        if provision.get("type") == "deny":
            return True
    return False


def _age(birth_date: str | None, today: date) -> int | None:
    if not birth_date:
        return None
    try:
        born = date.fromisoformat(birth_date[:10])
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _age_day(store: CareRecordStore, data: LookupMemberInput, zone: str, today: date) -> date:
    """The discharge day (member-local) of the run's stay, else its admission day, else ``today``.

    A review weeks or years after the stay must show the age the member had then: that is what the clinical
    rules and the TCM measure are about. A stay that is not this member's is ignored here; the clinical tool
    refuses it with the reason.
    """
    encounter = store.get("Encounter", data.encounter_id) if data.encounter_id else None
    if encounter is None or member_of(encounter) != data.member_id:
        return today
    period = encounter.get("period") or {}
    when = parse_instant(period.get("end")) or parse_instant(period.get("start"))
    return when.astimezone(ZoneInfo(zone)).date() if when else today


def lookup_member(store: CareRecordStore, data: LookupMemberInput, *, salt: str, today: date,
                  default_zone: str = DEFAULT_TIME_ZONE) -> MemberProfile:
    """The member's outreach view; ``default_zone`` (the plan's) only when the address gives no zone."""
    patient = store.get("Patient", data.member_id)
    if patient is None:
        raise tool_error(MEMBER_NOT_FOUND, f"no Patient with id {data.member_id!r} in the care records store")
    zone = resolve_member_zone(patient, default_zone=default_zone, on=today)
    points = contact_points(patient, today)
    channels: list[Channel] = [c for c in ("sms", "phone", "email", "letter") if c in points]
    language = None
    for comm in patient.get("communication") or []:
        codes = (comm.get("language") or {}).get("coding") or []
        if codes and (comm.get("preferred") or language is None):
            language = codes[0].get("code")
    deceased = is_deceased(patient)
    age_day = _age_day(store, data, zone.zone, today)
    return MemberProfile(
        member_id=data.member_id,
        pseudonym=pseudonym(data.member_id, salt),
        age_years=_age(patient.get("birthDate"), age_day),
        age_as_of=age_day,
        deceased=deceased,
        preferred_language=language,
        time_zone=zone.zone,
        time_zone_known=zone.known,
        time_zone_source=zone.source,
        time_zone_gap=zone.gap,
        channels=channels,
        preferred_channel=channels[0] if channels else None,
        opted_out=is_opted_out(store.find_for_member("Consent", data.member_id)),
    )
