"""PHI in text a model wrote: the member's own identifiers and common identifier patterns, in any spelling.

The model planner sees a de-identified brief, yet a model can still write
identifiers into a message, a task, a care plan or a determination (a
hallucination that happens to be right, a limited-data-set brief, a prompt
injected through a record). :func:`phi_in_text` finds them so the planner
activity can withhold the text before it reaches Temporal's history, the inbox,
the provider or the member.

Two kinds of finding, each named without quoting the value (a finding is shown
to reviewers and may be logged):

* the member's own identifiers, read from the records store on the worker
  (:func:`member_identifiers`): given and family names, the birth date in any
  common format (ISO, US and European numeric, month names, day-first or
  month-first, two-digit years), identifier values (MRN, member number...),
  phone numbers, e-mail addresses, address lines, the city and county, and ZIP
  codes;
* patterns that are identifiers whoever they belong to (``runtime.phi``: SSNs,
  phone numbers, e-mail addresses, ``MRN ...``; here also SSNs written with
  spaces or dots), a date next to "born", "DOB" or "birth", an age over 89
  (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C)), and runs of six or more
  digits.

Other spellings are the same identifier. Text and identifiers are both folded
first (:func:`fold`): compatibility forms (full-width letters) become plain,
accents are dropped (NFKD, combining marks removed, NFKC: "José" is "Jose"),
format characters a reader never sees (zero-width spaces, soft hyphens,
direction marks) are removed, and typographic apostrophes and dashes become
ASCII ones. A hyphenated or apostrophe name also counts by its parts
("O'Brien-Vrellquist" is found as "O'Brien", "OBrien", "Brien" or
"Vrellquist"); a part split off that way must have 3 letters or more, so "O",
"Mc" or "d'" alone never match, and be written as a name (capital first
letter: a lower-case part is a tag a system joined on, such as the synthetic
"Canary...-model-own-words-1", whose "model" would flag every text), while a
whole given or family name keeps the 2-letter minimum ("Jo") and any case. Address lines are compared word by word after the
USPS Publication 28 street suffixes, directionals and unit designators are
reduced to their standard abbreviations ("Street" is "St", "North" is "N",
"Apartment" is "Apt"), ordinal words to numbers ("Fifth" is "5th"), and a line
is also found without its house number or without its suffix.

The city (and county) is PHI under Safe Harbor, but some cities are ordinary
words ("Mobile", "Reading", "Normal", "Orange"): one of those (a short list
below) counts only when a state follows it ("Mobile, AL"), so a task that says
"mobile phone" is not flagged; any other city counts as a whole word anywhere,
case-insensitively (a clinic named after the member's city is flagged too: a
false alarm asks a human, which is the safe side).

The Patient's record id is not an identifier here: it is how staff find the
member, already a token in the model's brief and restored into its answer. It
is taken out of the text before names are matched, so a record id that happens
to share a piece of the name ("pt-smith-7" for "Smith-Jones") is no finding.
Names are matched whole-word and case-insensitively, so a member called "Will"
flags "we will call": a false alarm replaces text by the approved template and
asks a human, which is the safe side.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict

from runtime.phi import PATTERNS

__all__ = ["MemberIdentifiers", "fold", "member_identifiers", "phi_in_text"]

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH_NUMBER = {**{m: i for i, m in enumerate(_MONTHS, 1)}, **{m[:3]: i for i, m in enumerate(_MONTHS, 1)},
                 "sept": 9}
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december|" \
         r"jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
_NUMERIC_DATE = re.compile(r"(?<![\d/.-])(\d{1,4})([/.-])(\d{1,2})\2(\d{2,4})(?![\d/-]|\.\d)")
_COMPACT_DATE = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)")
# A year of four digits, or two ("4 Jul 41", "Jul 4, 41": either century, as _years reads it).
_MONTH_FIRST = re.compile(r"\b" + _MONTH + r"[\s/-]*(\d{1,2})(?:st|nd|rd|th)?(?:,\s*|[\s/-]+)(\d{4}|\d{2})\b",
                          re.IGNORECASE)
_DAY_FIRST = re.compile(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?[\s/-]*(?:of\s+)?" + _MONTH
                        + r"(?:,\s*|[\s/-]+)(\d{4}|\d{2})\b", re.IGNORECASE)
_BIRTH_WORDS = re.compile(r"\b(born|birth|birthday|d\.?o\.?b\.?)\b", re.IGNORECASE)
_LONG_NUMBER = re.compile(r"(?<![\w-])\d{6,}(?![\w-])")
# runtime.phi's SSN pattern needs hyphens; people also write spaces, dots or a mix ("123 45 6789").
_SSN_SEPARATED = re.compile(r"(?<![\d-])\d{3}(?:\s+|\s*[-.]\s*)\d{2}(?:\s+|\s*[-.]\s*)\d{4}(?![\d-])")
# Safe Harbor removes every age over 89: "92-year-old", "92 yrs old", "93 years of age", "92 y/o", "age 93".
_AGE = r"(?:9\d|1[0-2]\d)"
_AGE_OVER_89 = re.compile(
    rf"\b{_AGE}\s*-?\s*(?:years?|yrs?)\s*-?\s*(?:old|of\s+age)\b"
    rf"|\b{_AGE}\s*y\.?\s*/?\s*o\b"
    rf"|\bage[ds]?\s*(?:[:=]|of|is)?\s*{_AGE}\b"
    r"|\bin\s+(?:his|her|their)\s+(?:90s|nineties)\b|\b(?:nonagenarian|centenarian)\b",
    re.IGNORECASE)
_GENERIC = {"EMAIL": "an e-mail address", "SSN": "an SSN", "PHONE": "a phone number", "MRN": "an MRN"}

# fold(): what NFKD leaves whole (letters with a stroke, ligatures) and typographic apostrophes and dashes.
_APOSTROPHES = "\u2018\u2019\u201b\u02bc\u02b9\u0060\u00b4\uff07"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
_FOLD_TABLE = str.maketrans({"\u00df": "ss", "\u1e9e": "SS", "\u00e6": "ae", "\u00c6": "AE", "\u0153": "oe",
                             "\u0152": "OE", "\u00f8": "o", "\u00d8": "O", "\u0142": "l", "\u0141": "L",
                             "\u0111": "d", "\u0110": "D", "\u0131": "i",
                             **dict.fromkeys(_APOSTROPHES, "'"), **dict.fromkeys(_DASHES, "-")})
_NAME_PART_MIN = 2  # a whole given or family name ("Jo")
_NAME_PIECE_MIN = 3  # a piece of a hyphenated or apostrophe name: "O", "Mc" and "d'" alone would match too much

# USPS Publication 28, appendix C1 (street suffixes, the common ones), C2 (unit designators) and the
# directionals: every spelling → the standard abbreviation.
_USPS = {
    "st": "street str strt", "ave": "avenue av aven avenu avn avnue", "rd": "road", "blvd": "boulevard boul boulv",
    "dr": "drive driv drv", "ln": "lane", "ct": "court", "pl": "place", "ter": "terrace terr",
    "cir": "circle circ circl crcl crcle", "hwy": "highway highwy hiway hiwy hway", "pkwy": "parkway parkwy pkway pky",
    "sq": "square sqr sqre squ", "trl": "trail trails trls", "way": "wy", "aly": "alley allee ally", "cv": "cove",
    "xing": "crossing crssng", "expy": "expressway exp expr express expw", "fwy": "freeway frway frwy freewy",
    "hts": "heights ht", "mnr": "manor", "plz": "plaza plza", "pt": "point", "rdg": "ridge", "crk": "creek",
    "cres": "crescent crsent crsnt", "grv": "grove", "hl": "hill", "hls": "hills", "jct": "junction", "lk": "lake",
    "mdws": "meadows", "tpke": "turnpike trnpk turnpk", "vw": "view", "bnd": "bend", "byp": "bypass",
    "ctr": "center centre cntr", "est": "estate", "holw": "hollow", "lndg": "landing", "pass": "pass",
    "pike": "pikes", "path": "paths", "loop": "loops", "walk": "walks", "row": "row", "run": "run",
    "n": "north", "s": "south", "e": "east", "w": "west", "ne": "northeast", "nw": "northwest", "se": "southeast",
    "sw": "southwest", "apt": "apartment", "ste": "suite", "bldg": "building", "fl": "floor", "rm": "room",
    "unit": "unit", "#": "#",
    "1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth", "6th": "sixth",
    "7th": "seventh", "8th": "eighth", "9th": "ninth", "10th": "tenth",
}
_USPS_WORD = {spelling: abbr for abbr, spellings in _USPS.items() for spelling in (abbr, *spellings.split())}
_SUFFIXES = frozenset(_USPS) - {"n", "s", "e", "w", "ne", "nw", "se", "sw", "apt", "ste", "bldg", "fl", "rm", "unit",
                                 "#", "1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th"}
_DIRECTIONALS = frozenset({"n", "s", "e", "w", "ne", "nw", "se", "sw"})
_UNITS = frozenset({"apt", "ste", "bldg", "fl", "rm", "unit", "#"})
# Cities that are also ordinary English words: found only with a state after them ("Mobile, AL").
_ORDINARY_CITIES = frozenset(
    "mobile reading normal orange independence liberty commerce buffalo eureka hope unity friendship justice "
    "enterprise opportunity progress success industry union concord harmony paradise plain bath chance story "
    "energy loyal mission surprise why nothing boring speed sandy rugby bend home center college temple beach "
    "park bay hill valley lake marine camp holiday spring victoria march august ransom cash modesto welcome "
    "early elizabeth grant joy hazard".split())
_STATES = {
    "al": "alabama", "ak": "alaska", "az": "arizona", "ar": "arkansas", "ca": "california", "co": "colorado",
    "ct": "connecticut", "de": "delaware", "dc": "district of columbia", "fl": "florida", "ga": "georgia",
    "hi": "hawaii", "id": "idaho", "il": "illinois", "in": "indiana", "ia": "iowa", "ks": "kansas", "ky": "kentucky",
    "la": "louisiana", "me": "maine", "md": "maryland", "ma": "massachusetts", "mi": "michigan", "mn": "minnesota",
    "ms": "mississippi", "mo": "missouri", "mt": "montana", "ne": "nebraska", "nv": "nevada", "nh": "new hampshire",
    "nj": "new jersey", "nm": "new mexico", "ny": "new york", "nc": "north carolina", "nd": "north dakota",
    "oh": "ohio", "ok": "oklahoma", "or": "oregon", "pa": "pennsylvania", "ri": "rhode island",
    "sc": "south carolina", "sd": "south dakota", "tn": "tennessee", "tx": "texas", "ut": "utah", "vt": "vermont",
    "va": "virginia", "wa": "washington", "wv": "west virginia", "wi": "wisconsin", "wy": "wyoming",
    "pr": "puerto rico", "gu": "guam", "vi": "virgin islands",
}
_STATE_AFTER = r"\s*,?\s*(?:" + "|".join(sorted({*_STATES, *_STATES.values()}, key=len, reverse=True)) + r")\b"


def fold(text: str) -> str:
    """``text`` as a reader sees it, in one spelling: compatibility forms plain, accents and invisible format
    characters removed, typographic apostrophes and dashes ASCII (a zero-width space inside "José": "Jose")."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c) and unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFKC", kept).translate(_FOLD_TABLE)


class MemberIdentifiers(BaseModel):
    """One member's identifying values, read on the worker; never put in an activity's input or result."""

    model_config = ConfigDict(frozen=True)

    names: tuple[str, ...] = ()
    record_id: str = ""
    birth_date: date | None = None
    identifiers: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    address_lines: tuple[str, ...] = ()
    cities: tuple[str, ...] = ()
    postal_codes: tuple[str, ...] = ()


def member_identifiers(patient: dict[str, Any]) -> MemberIdentifiers:
    """The identifying values of a FHIR R4 Patient (every name, identifier, telecom and address it lists)."""
    names: list[str] = []
    for name in patient.get("name") or []:
        # Prefixes (Mr, Dr) and suffixes are not identifying on their own; every other part of the name is.
        parts = [*(name.get("given") or []), name.get("family") or "", name.get("text") or ""]
        names += [p for part in parts for p in re.split(r"[\s,]+", fold(str(part))) if len(p) >= _NAME_PART_MIN]
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
    # The county (FHIR Address.district) is a subdivision smaller than a state, as the city is.
    cities = [fold(str(a[k])).strip() for a in addresses for k in ("city", "district")
              if a.get(k) and len(str(a[k]).strip()) >= 3]
    return MemberIdentifiers(names=tuple(dict.fromkeys(names)), record_id=record_id, birth_date=birth,
                             identifiers=tuple(dict.fromkeys(identifiers)), phones=tuple(phones),
                             emails=tuple(emails), address_lines=tuple(lines), cities=tuple(dict.fromkeys(cities)),
                             postal_codes=tuple(postal))


def phi_in_text(text: str, member: MemberIdentifiers | None = None) -> list[str]:
    """What identifies a person in ``text``: kinds such as "the member's name" or "an SSN", in a stable order,
    each once; empty when nothing does. ``member`` None checks the patterns only."""
    found: list[str] = []
    member = member or MemberIdentifiers()
    text = fold(text)  # one spelling: "José", "Jos\u200be" and "Ｊｏｓｅ" are all "Jose"
    if member.record_id:  # how staff find the member, not an identifier: its parts never count as a name
        text = re.sub(re.escape(fold(member.record_id)), " ", text, flags=re.IGNORECASE)
    if any(_word(name).search(text) for name in _name_forms(member.names)):
        found.append("the member's name")
    dates = _dates_in(text)
    if member.birth_date is not None and any(member.birth_date in candidates for _, candidates in dates):
        found.append("the member's birth date")
    elif any(_BIRTH_WORDS.search(text[max(0, start - 30):start]) for start, _ in dates):
        found.append("a date of birth")
    if any(_word(fold(value)).search(text) for value in member.identifiers):
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
    if _SSN_SEPARATED.search(text):
        found.append("an SSN")
    if _address_found(text, member):
        found.append("the member's address")
    if any(_city_pattern(city).search(text) for city in member.cities):
        found.append("the member's city or county")
    if _AGE_OVER_89.search(text):
        found.append("an age over 89")
    if _LONG_NUMBER.search(text):
        found.append("an identifier-like number")
    if "the member's MRN or other identifier" in found:  # the same value matched the generic MRN pattern
        found = [kind for kind in found if kind != "an MRN"]
    return list(dict.fromkeys(found))


def _name_forms(names: tuple[str, ...]) -> list[str]:
    """Each name, and the parts of a hyphenated or apostrophe one: "O'Brien-Vrellquist" → itself, "O'Brien",
    "OBrien", "Brien", "Vrellquist"; parts of fewer than 3 letters ("O", "2") or in lower case are dropped)."""
    forms: list[str] = []
    for name in names:
        name = fold(name)
        forms.append(name)
        for segment in re.split(r"-+", name):
            pieces = [p for p in re.split(r"'+", segment) if p]
            if segment != name and _is_name_piece(segment):
                forms.append(segment)
            if len(pieces) > 1:
                forms.append("".join(pieces))  # "O'Brien" written "OBrien"
                forms += [p for p in pieces if _is_name_piece(p)]
    return list(dict.fromkeys(f for f in forms if f))


def _is_name_piece(piece: str) -> bool:
    """3 letters or more, written as a name is (a capital first letter: "Vrellquist", "VRELLQUIST"); a lower-case
    piece is a tag some system joined on ("canary-...-model-own-words-1"), and ordinary words would match."""
    return sum(c.isalpha() for c in piece) >= _NAME_PIECE_MIN and piece[0].isupper()


def _address_words(text: str) -> list[str]:
    """Lower-case words with every USPS spelling at its standard abbreviation ("Street." → "st")."""
    words = re.findall(r"[a-z0-9]+|#", fold(text).lower().replace("'", ""))
    return [_USPS_WORD.get(w, w) for w in words]


def _address_forms(line: str) -> list[str]:
    """The line without its unit; also without its directionals, its house number or its suffix, while a street
    name of 3 letters or more is left ("123 N Canaryfield Street Apt 4" → "123 n canaryfield st",
    "123 canaryfield st", "canaryfield st", "123 canaryfield"...)."""
    words = _address_words(line)
    core = words[:next((i for i, w in enumerate(words) if w in _UNITS), len(words))] or words
    forms = []
    for full in (core, [w for w in core if w not in _DIRECTIONALS]):  # "N" is often left out
        forms.append(full)
        numbered = bool(full) and full[0][0].isdigit()
        if numbered:
            forms.append(full[1:])
        if numbered and full[-1] in _SUFFIXES:
            forms.append(full[:-1])
    named = [f for f in forms[1:] if len(f) >= 2 and any(
        len(w) >= 3 and not w[0].isdigit() and w not in _SUFFIXES and w not in _DIRECTIONALS for w in f)]
    return list(dict.fromkeys(" ".join(f) for f in [core, *named] if f))


def _address_found(text: str, member: MemberIdentifiers) -> bool:
    words = f" {' '.join(_address_words(text))} "
    if any(f" {form} " in words for line in member.address_lines for form in _address_forms(line)):
        return True
    return any(re.search(rf"(?<!\d){re.escape(z)}(?!\d)", text) for z in member.postal_codes)


def _city_pattern(city: str) -> re.Pattern[str]:
    """The city as a whole word (any spacing); an ordinary-word city only when a state follows it."""
    words = fold(city).split()
    body = r"(?<![A-Za-z0-9])" + r"\s+".join(re.escape(w) for w in words) + r"(?![A-Za-z0-9])"
    if len(words) == 1 and words[0].lower() in _ORDINARY_CITIES:
        body += _STATE_AFTER
    return re.compile(body, re.IGNORECASE)


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
        month = _MONTH_NUMBER[m.group(1).lower()]
        out.append((m.start(), _valid([(y, month, int(m.group(2))) for y in _years(m.group(3))])))
    for m in _DAY_FIRST.finditer(text):
        month = _MONTH_NUMBER[m.group(2).lower()]
        out.append((m.start(), _valid([(y, month, int(m.group(1))) for y in _years(m.group(3))])))
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
