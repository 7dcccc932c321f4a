"""A member's time zone from their address: the state (code or name, any case), else the ZIP code.

TCPA contact hours are the member's local hours, so the zone must come from the member, not the plan. Feeds
write the state every way there is ("CA", "California", "new york", "District of Columbia", "Puerto Rico"),
and some write only a ZIP code. The ZIP code decides within states that span two zones (Florida's
panhandle, west Texas, most of Indiana's counties...) because the state alone cannot.

Names come from the ``holidays`` package's ISO 3166-2:US subdivision names and ZIP codes from the ``zipcodes``
package (its data ships inside the wheel, refreshed monthly upstream; no network, no hand-made table). Only
when neither gives a zone is the plan's zone used, and the reason why (:data:`TimeZoneGap`) travels with it
so a verdict can say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import zipcodes
from holidays.countries.united_states import UnitedStates

__all__ = [
    "DEFAULT_TIME_ZONE",
    "GAP_TEXT",
    "MemberZone",
    "TimeZoneGap",
    "TimeZoneSource",
    "member_time_zone",
    "resolve_member_zone",
    "state_code",
    "time_zone_for_state",
    "time_zone_for_zip",
]

TimeZoneSource = Literal["zip", "state", "plan_default"]
TimeZoneGap = Literal["no_address", "no_state_or_zip", "unrecognised_state", "unrecognised_zip"]

GAP_TEXT: dict[TimeZoneGap, str] = {
    "no_address": "no address on file",
    "no_state_or_zip": "the address names no state and no ZIP code",
    "unrecognised_state": "the address state is not a recognised US state or territory",
    "unrecognised_zip": "the address has no state and its ZIP code is not a known US ZIP code",
}
"""Why the plan's zone stands in for the member's: what a reviewer reads."""

DEFAULT_TIME_ZONE = "America/New_York"
"""The plan zone when the caller names none (the settings' default ``plan_time_zone``)."""

# Primary IANA zone per USPS code: where most of the state's people live. The ZIP code refines it where a
# state spans two zones.
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
    "AS": "Pacific/Pago_Pago",
    "MP": "Pacific/Saipan",
}

# Spellings the ISO names miss, as feeds write them (normalised: lower-case letters, single spaces).
_ALIASES = {
    "washington dc": "DC", "washington d c": "DC", "d c": "DC",
    "virgin islands": "VI", "us virgin islands": "VI", "u s virgin islands": "VI",
    "united states virgin islands": "VI", "virgin islands of the united states": "VI",
    "commonwealth of puerto rico": "PR",
    "commonwealth of the northern mariana islands": "MP", "cnmi": "MP",
}
_ZIP = re.compile(r"(\d{5})(?:[-\s]?\d{4})?")


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^a-z]+", " ", text.lower()).split())


@cache
def _state_names() -> dict[str, str]:
    names = {_normalised(name): code for name, code in UnitedStates.subdivisions_aliases.items()}
    return {**names, **_ALIASES}


def state_code(state: str | None) -> str | None:
    """The USPS code for a state or territory given as a code or a name, in any case; None if not one."""
    if not state or not state.strip():
        return None
    text = state.strip()
    if text.upper() in _STATE_ZONES:
        return text.upper()
    code = _state_names().get(_normalised(text))
    # A subdivision without a zone of its own (the Minor Outlying Islands: uninhabited or several zones).
    return code if code in _STATE_ZONES else None


def time_zone_for_state(state: str | None, default_zone: str = DEFAULT_TIME_ZONE) -> tuple[str, bool]:
    """(zone, known): the primary zone of a state or territory (code or name); unknown → ``default_zone``."""
    code = state_code(state)
    if code is None:
        return default_zone, False
    return _STATE_ZONES[code], True


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def time_zone_for_zip(postal_code: str | None) -> tuple[str, str] | None:
    """(zone, USPS state code) of a US ZIP code (5 digits, or ZIP+4) from the ``zipcodes`` data; None if it is
    not one, is unknown, or the data has no valid IANA zone for it (a few hundred entries have none)."""
    match = _ZIP.fullmatch((postal_code or "").strip())
    if match is None:
        return None
    for entry in zipcodes.matching(match.group(1)):
        zone = entry.get("timezone") or ""
        if _valid_zone(zone):
            return zone, entry.get("state") or ""
    return None


@dataclass(frozen=True)
class MemberZone:
    """The zone for a member, where it came from, and (for the plan's zone) why nothing better was known."""

    zone: str
    source: TimeZoneSource
    gap: TimeZoneGap | None = None

    @property
    def known(self) -> bool:
        return self.source != "plan_default"


def _address_zone(address: dict[str, Any]) -> MemberZone | TimeZoneGap:
    code = state_code(address.get("state"))
    by_zip = time_zone_for_zip(address.get("postalCode"))
    # The ZIP code decides only when it lies in the state given (or no state is given): a ZIP from another state
    # is a typo in one of the two, and the state is the more often right.
    if by_zip is not None and (code is None or by_zip[1] == code):
        return MemberZone(by_zip[0], "zip")
    if code is not None:
        return MemberZone(_STATE_ZONES[code], "state")
    if address.get("state"):
        return "unrecognised_state"
    if address.get("postalCode"):
        return "unrecognised_zip"
    return "no_state_or_zip"


def _current(address: dict[str, Any], today: str) -> bool:
    ended = (address.get("period") or {}).get("end")
    return address.get("use") != "old" and not (ended and ended[:10] < today)


def resolve_member_zone(patient: dict[str, Any], *, default_zone: str = DEFAULT_TIME_ZONE,
                        on: date | None = None) -> MemberZone:
    """The member's zone from their addresses: current home ones first, then other current ones, then old ones.

    The first address that yields a zone wins. When none does, ``default_zone`` (the plan's) with the most
    telling reason: a state that was there but unreadable outranks a bad ZIP code, which outranks an address
    with neither.
    """
    today = (on or datetime.now(UTC).date()).isoformat()
    addresses = [a for a in patient.get("address") or [] if isinstance(a, dict)]
    if not addresses:
        return MemberZone(default_zone, "plan_default", "no_address")
    ranked = sorted(addresses, key=lambda a: (not _current(a, today), a.get("use") != "home"))
    gaps: list[TimeZoneGap] = []
    for address in ranked:
        found = _address_zone(address)
        if isinstance(found, MemberZone):
            return found
        gaps.append(found)
    order: list[TimeZoneGap] = ["unrecognised_state", "unrecognised_zip", "no_state_or_zip"]
    return MemberZone(default_zone, "plan_default", min(gaps, key=order.index))


def member_time_zone(patient: dict[str, Any], *, default_zone: str = DEFAULT_TIME_ZONE) -> tuple[str, bool]:
    """(zone, known) of a member (see :func:`resolve_member_zone`)."""
    found = resolve_member_zone(patient, default_zone=default_zone)
    return found.zone, found.known
