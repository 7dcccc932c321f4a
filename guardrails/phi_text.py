"""PHI in text a model wrote: the member's own identifiers and common identifier patterns.

The model planner sees a de-identified brief, yet a model can still write
identifiers into a message, a task or a care plan (a hallucination that happens
to be right, a limited-data-set brief, a prompt injected through a record).
:func:`phi_in_text` finds them so the planner activity can withhold the text
before it reaches Temporal's history, the inbox or the member.

Two kinds of finding, each named without quoting the value (a finding is shown
to reviewers and may be logged):

* the member's own identifiers, read from the records store on the worker
  (:func:`member_identifiers`): given and family names, the birth date in any
  common format (ISO, US and European numeric, month names, two-digit years),
  identifier values (MRN, member number...), phone numbers, e-mail addresses,
  address lines and ZIP codes;
* patterns that are identifiers whoever they belong to (``runtime.phi``: SSNs,
  phone numbers, e-mail addresses, ``MRN ...``), a date next to "born", "DOB"
  or "birth", and runs of six or more digits.

The Patient's record id is not an identifier here: it is how staff find the
member, already a token in the model's brief and restored into its answer.
Names are matched whole-word and case-insensitively, so a member called "Will"
flags "we will call": a false alarm replaces text by the approved template and
asks a human, which is the safe side.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict

from runtime.phi import PATTERNS

__all__ = ["MemberIdentifiers", "member_identifiers", "phi_in_text"]

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH_NUMBER = {**{m: i for i, m in enumerate(_MONTHS, 1)}, **{m[:3]: i for i, m in enumerate(_MONTHS, 1)},
                 "sept": 9}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|" \
         r"jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
_NUMERIC_DATE = re.compile(r"(?<![\d/.-])(\d{1,4})([/.-])(\d{1,2})\2(\d{2,4})(?![\d/-]|\.\d)")
_COMPACT_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
_MONTH_FIRST = re.compile(_MONTH + r"\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.IGNORECASE)
_DAY_FIRST = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r",?\s+(\d{4})\b", re.IGNORECASE)
_BIRTH_WORDS = re.compile(r"\b(born|birth|birthday|d\.?o\.?b\.?)\b", re.IGNORECASE)
_LONG_NUMBER = re.compile(r"(?<![\w-])\d{6,}(?![\w-])")
_GENERIC = {"EMAIL": "an e-mail address", "SSN": "an SSN", "PHONE": "a phone number", "MRN": "an MRN"}


class MemberIdentifiers(BaseModel):
    """One member's identifying values, read on the worker; never put in an activity's input or result."""

    model_config = ConfigDict(frozen=True)

    names: tuple[str, ...] = ()
    birth_date: date | None = None
    identifiers: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    address_lines: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()


def member_identifiers(patient: dict[str, Any]) -> MemberIdentifiers:
    """The identifying values of a FHIR R4 Patient (every name, identifier, telecom and address it lists)."""
    names: list[str] = []
    for name in patient.get("name") or []:
        # Prefixes (Mr, Dr) and suffixes are not identifying on their own; every other part of the name is.
        parts = [*(name.get("given") or []), name.get("family") or "", name.get("text") or ""]
        names += [p for part in parts for p in re.split(r"[\s,]+", str(part)) if len(p) >= 2]
    birth = _iso_date(patient.get("birthDate"))
    record_id = str(patient.get("id") or "")
    identifiers = [str(i.get("value")) for i in patient.get("identifier") or []
                   if i.get("value") and len(str(i["value"])) >= 4 and str(i["value"]) != record_id]
    telecom = patient.get("telecom") or []
    phones = [t["value"] for t in telecom if t.get("value") and t.get("system") in ("phone", "sms", "fax")]
    emails = [t["value"] for t in telecom if t.get("value") and t.get("system") == "email"]
    addresses = patient.get("address") or []
    lines = [line for a in addresses for line in a.get("line") or [] if line and len(line.strip()) >= 5]
    postal = [str(a["postalCode"])[:5] for a in addresses if a.get("postalCode") and len(str(a["postalCode"])) >= 5]
    return MemberIdentifiers(names=tuple(dict.fromkeys(names)), birth_date=birth,
                             identifiers=tuple(dict.fromkeys(identifiers)), phones=tuple(phones),
                             emails=tuple(emails), address_lines=tuple(lines), postal_codes=tuple(postal))


def phi_in_text(text: str, member: MemberIdentifiers | None = None) -> list[str]:
    """What identifies a person in ``text``: kinds such as "the member's name" or "an SSN", in a stable order,
    each once; empty when nothing does. ``member`` None checks the patterns only."""
    found: list[str] = []
    member = member or MemberIdentifiers()
    if any(_word(name).search(text) for name in member.names):
        found.append("the member's name")
    dates = _dates_in(text)
    if member.birth_date is not None and any(member.birth_date in candidates for _, candidates in dates):
        found.append("the member's birth date")
    elif any(_BIRTH_WORDS.search(text[max(0, start - 30):start]) for start, _ in dates):
        found.append("a date of birth")
    if any(_word(value).search(text) for value in member.identifiers):
        found.append("the member's MRN or other identifier")
    member_phones = {_digits(p)[-10:] for p in member.phones if len(_digits(p)) >= 7}
    member_emails = {e.lower() for e in member.emails}
    for kind, pattern in PATTERNS:
        for match in pattern.finditer(text):
            if kind == "PHONE" and _digits(match.group(0))[-10:] in member_phones:
                found.append("the member's phone number")
            elif kind == "EMAIL" and match.group(0).lower() in member_emails:
                found.append("the member's e-mail address")
            else:
                found.append(_GENERIC[kind])
    flat = " ".join(text.lower().split())
    if any(" ".join(line.lower().split()) in flat for line in member.address_lines) or any(
            re.search(rf"(?<!\d){re.escape(z)}(?!\d)", text) for z in member.postal_codes):
        found.append("the member's address")
    if _LONG_NUMBER.search(text):
        found.append("an identifier-like number")
    if "the member's MRN or other identifier" in found:  # the same value matched the generic MRN pattern
        found = [kind for kind in found if kind != "an MRN"]
    return list(dict.fromkeys(found))


def _word(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", re.IGNORECASE)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _iso_date(value: Any) -> date | None:  # noqa: ANN401
    try:
        return date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None  # a partial birth date (1931 or 1931-07) names no day to look for


def _dates_in(text: str) -> list[tuple[int, set[date]]]:
    """Each date-like run in text: (where it starts, every date it may mean: Y-M-D, M/D/Y and D/M/Y)."""
    out: list[tuple[int, set[date]]] = []
    for m in _NUMERIC_DATE.finditer(text):
        a, b, c = m.group(1), int(m.group(3)), m.group(4)
        if len(a) == 4:
            out.append((m.start(), _valid([(int(a), b, int(c))])))
        elif len(a) <= 2:
            out.append((m.start(), _valid([(y, int(a), b) for y in _years(c)] + [(y, b, int(a)) for y in _years(c)])))
    for m in _COMPACT_DATE.finditer(text):
        out.append((m.start(), _valid([(int(m.group(1)), int(m.group(2)), int(m.group(3)))])))
    for m in _MONTH_FIRST.finditer(text):
        out.append((m.start(), _valid([(int(m.group(3)), _MONTH_NUMBER[m.group(1).lower()], int(m.group(2)))])))
    for m in _DAY_FIRST.finditer(text):
        out.append((m.start(), _valid([(int(m.group(3)), _MONTH_NUMBER[m.group(2).lower()], int(m.group(1)))])))
    return [(start, dates) for start, dates in out if dates]


def _years(text: str) -> list[int]:
    """A four-digit year, or a two-digit one in either century a living member's birth may fall in."""
    if len(text) == 4:
        return [int(text)]
    if len(text) == 2:
        return [1900 + int(text), 2000 + int(text)]
    return []


def _valid(candidates: list[tuple[int, int, int]]) -> set[date]:
    out = set()
    for year, month, day in candidates:
        try:
            out.add(date(year, month, day))
        except ValueError:
            continue
    return out
