"""``lookup_member``: what outreach needs to know about a member, and nothing more.

Minimum necessary (45 CFR 164.502(b)): no name, no date of birth, no address,
no phone number leaves this tool; only age in years, the channels that exist,
the preferred one, the time zone (from the address state), opt-out and
deceased flags.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from store.records import CareRecordStore
from tools.errors import MEMBER_NOT_FOUND, tool_error

__all__ = [
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

# Primary IANA zone per state: most members live there; a multi-zone state
# (e.g. FL panhandle) uses the zone of most of its population.
_STATE_ZONES: dict[str, str] = {
    **dict.fromkeys(
        "CT DE DC FL GA IN KY ME MD MA MI NH NJ NY NC OH PA RI SC VT VA WV".split(), "America/New_York"
    ),
    **dict.fromkeys("AL AR IL IA KS LA MN MS MO NE ND OK SD TN TX WI".split(), "America/Chicago"),
    **dict.fromkeys("CO ID MT NM UT WY".split(), "America/Denver"),
    "AZ": "America/Phoenix",
    **dict.fromkeys("CA NV OR WA".split(), "America/Los_Angeles"),
    "AK": "America/Anchorage",
    "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico",
    "VI": "America/St_Thomas",
    "GU": "Pacific/Guam",
}
DEFAULT_TIME_ZONE = "America/New_York"


def time_zone_for_state(state: str | None) -> tuple[str, bool]:
    """(zone, known): the member's zone from a US state code; unknown → Eastern, flagged."""
    if state and state.upper() in _STATE_ZONES:
        return _STATE_ZONES[state.upper()], True
    return DEFAULT_TIME_ZONE, False


def member_time_zone(patient: dict[str, Any]) -> tuple[str, bool]:
    """(zone, known) from the first address that names a state."""
    state = next((a.get("state") for a in patient.get("address") or [] if a.get("state")), None)
    return time_zone_for_state(state)


def salted_digest(text: str, salt: str) -> str:
    """HMAC-SHA256 of ``text`` under ``salt``, hex: stable, and not reversible without the salt."""
    return hmac.new(salt.encode(), text.encode(), hashlib.sha256).hexdigest()


def pseudonym(member_id: str, salt: str) -> str:
    """A stable, salted pseudonym for summaries and search attributes (not reversible)."""
    return f"mbr-{salted_digest(member_id, salt)[:12]}"


class LookupMemberInput(BaseModel):
    member_id: str = Field(description="Patient.id in the care records store.")


class MemberProfile(BaseModel):
    """The outreach view of a member (minimum necessary)."""

    member_id: str
    pseudonym: str
    age_years: int | None = Field(description="Age today, for HEDIS 18+ checks; None if unknown.")
    deceased: bool
    preferred_language: str | None = Field(default=None, description="BCP-47 code, e.g. en-US.")
    time_zone: str = Field(description="IANA zone used for TCPA contact hours.")
    time_zone_known: bool = Field(description="False when the zone is a default, not from an address.")
    channels: list[Channel] = Field(description="Channels the member can be reached on.")
    preferred_channel: Channel | None
    opted_out: bool = Field(description="An active Consent denies automated outreach.")


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


def lookup_member(store: CareRecordStore, data: LookupMemberInput, *, salt: str, today: date) -> MemberProfile:
    patient = store.get("Patient", data.member_id)
    if patient is None:
        raise tool_error(MEMBER_NOT_FOUND, f"no Patient with id {data.member_id!r} in the care records store")
    zone, known = member_time_zone(patient)
    points = contact_points(patient, today)
    channels: list[Channel] = [c for c in ("sms", "phone", "email", "letter") if c in points]
    language = None
    for comm in patient.get("communication") or []:
        codes = (comm.get("language") or {}).get("coding") or []
        if codes and (comm.get("preferred") or language is None):
            language = codes[0].get("code")
    deceased = is_deceased(patient)
    return MemberProfile(
        member_id=data.member_id,
        pseudonym=pseudonym(data.member_id, salt),
        age_years=_age(patient.get("birthDate"), today),
        deceased=deceased,
        preferred_language=language,
        time_zone=zone,
        time_zone_known=known,
        channels=channels,
        preferred_channel=channels[0] if channels else None,
        opted_out=is_opted_out(store.find_for_member("Consent", data.member_id)),
    )
