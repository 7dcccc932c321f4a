"""HL7 v2 ADT messages: parsed with the ``hl7`` library, checked, and mapped to the Encounter they change.

Accepted: ADT^A03 (discharge) and the events that change an episode — A01
(admit), A04 (register), A08 (update), A11 (cancel admit), A13 (cancel
discharge). Other ADT events are accepted and ignored (an ADT feed sends them
all; rejecting them would only make the sender retry). Versions 2.3 to 2.9.

Mapping (the Encounter id is the visit number, the member the Patient id):

======================  ==============================================
PID-3 (first CX, id)    ``Encounter.subject`` → ``Patient/<id>`` (must exist)
PV1-2 patient class     ``Encounter.class``: I → IMP, E → EMER, O → AMB
PV1-4 admission type    ``Encounter.priority`` (v3-ActPriority): E, A → EM; U → UR; C → EL; R → R
PV1-19 visit number     ``Encounter.id``
PV1-44 admit time       ``Encounter.period.start``
PV1-45 discharge time   ``Encounter.period.end`` (required on A03)
PV1-36 disposition      ``Encounter.hospitalization.dischargeDisposition``
======================  ==============================================

PV1-4 (HL7 table 0007) is what LACE's "A" reads (``tools/clinical.py``: priority EM or UR, or admit source
``emd``, is an acute admission): emergency (E), accident (A) and urgent (U) admissions are acute; elective (C)
and routine (R) are not. Labor and delivery (L), newborn (N) and site-defined codes are not mapped: the
admission's acuity stays unrecorded and LACE is not scored, exactly as for a message without PV1-4 (the run
says ``LACE missing acute_admission`` and goes to people). A message without a mapped PV1-4 keeps the
priority the Encounter already has (an A01 that carried it); a mapped one replaces it. PV1-14 admit source is
not read (its codes are site-defined; table 0023 is user-defined).

What else LACE needs is not in the message: length of stay comes from PV1-44/45 above; comorbidities from the
member's Conditions in the records store (DG1 is not read: a hospital's working diagnoses are not the plan's
record of the member's conditions, and this mapping writes the Encounter only); ED visits in the 6 months before
from the member's other Encounters in the store (an earlier ADT event with PV1-2 E, or imported claims).

The Encounter careloom creates from an ADT event records who sent it: a ``meta.tag`` with system
``urn:careloom:adt-facility`` and the MSH-4 sending facility as code. Only that facility may change it
later (any other gets AR, nothing applied, no run withdrawn); see :func:`check_owner`. An Encounter imported
from files has no such tag and takes events from any allowed facility, as before.

IN1 (insurance) is read by no one: the member's coverage is the plan's own
(Coverage in the records store, checked by the run's eligibility step), and the
hospital's IN1 is its view of it, keyed by its own plan codes — mapping IN1-2 to
a Coverage would need a per-hospital code table. PID names, birth date and
address are never read: PID-3 is the only PID field careloom uses.

HL7 times without an offset are the sending facility's local time, taken as
the plan's time zone. A message careloom cannot use raises :class:`AdtRefused`
with the ACK code (AR: never resend as is; AE: fix the data, then resend) and
the reason, naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo

import hl7
import structlog

from runtime.errors import CareloomError

__all__ = ["FACILITY_TAG_SYSTEM", "SUPPORTED_EVENTS", "AdtEvent", "AdtRefused", "apply_event", "check_owner",
           "event_label", "owner_of", "parse_adt", "read_segments", "sender_of"]

log = structlog.get_logger(__name__)

FACILITY_TAG_SYSTEM = "urn:careloom:adt-facility"
"""``Encounter.meta.tag`` system whose code is the MSH-4 facility whose ADT feed created the Encounter.

A tag, not ``Encounter.serviceProvider``: serviceProvider is clinical data that imported files carry too
(sample_data's Encounters, like Synthea's, name their Organization), so it could not tell "created by this
feed" from "imported";
and not an identifier, which other systems search on as a business key. A tag is FHIR's place for a
process marker, is kept by every store write, and validates as R4 (a Coding: system a URI, code a token).
"""

SUPPORTED_EVENTS = frozenset({"A01", "A03", "A04", "A08", "A11", "A13"})
_READ = ("MSH", "PID", "PV1")  # the only segments careloom reads
_VERSION = re.compile(r"^2\.[3-9](\.\d+)?$")
_CLASSES = {"I": "IMP", "E": "EMER", "O": "AMB"}
# HL7 table 0007 admission type (PV1-4) → v3-ActPriority (Encounter.priority); LACE's acute: EM, UR.
_ADMISSION_TYPES = {"E": "EM", "A": "EM", "U": "UR", "C": "EL", "R": "R"}
_PRIORITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActPriority"
# UB-04 patient discharge status (PV1-36) → FHIR discharge-disposition.
_DISPOSITIONS = {"01": "home", "02": "other-hcf", "03": "snf", "04": "long", "05": "other-hcf", "06": "home",
                 "07": "aadvice", "20": "exp", "21": "oth", "43": "other-hcf", "50": "hosp", "51": "hosp",
                 "61": "snf", "62": "rehab", "63": "long", "64": "snf", "65": "psy", "66": "other-hcf"}
_TS = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?$")
AckCode = Literal["AA", "AE", "AR"]


class AdtRefused(CareloomError):
    """A message careloom answers with AE or AR; ``reason`` goes into MSA-3 (no PHI).

    ``error`` is the HL7 table 0357 error condition code and ``location`` the field at fault
    (``("PV1", 45)``; ``("PID", None)`` for a whole segment): they become the ACK's ERR segment.
    """

    def __init__(self, ack: AckCode, reason: str, message: hl7.Message | None = None, *, error: str = "207",
                 location: tuple[str, int | None] | None = None) -> None:
        super().__init__(reason)
        self.ack = ack
        self.reason = reason
        self.message = message
        self.error = error
        self.location = location


@dataclass(frozen=True)
class AdtEvent:
    """What one ADT message says about one episode (identifiers and times only)."""

    event: str
    control_id: str
    member_id: str
    encounter_id: str
    patient_class: str | None
    admitted_at: datetime | None
    discharged_at: datetime | None
    disposition: str | None
    facility: str = ""
    """MSH-4 sending facility (first component): who sent it, for allow-lists and the ledger's actor."""
    priority: str | None = None
    """PV1-4 admission type as a v3-ActPriority code (EM, UR, EL, R); None when absent or not mapped."""


def _field(message: hl7.Message, segment: str, field: int, component: int = 1) -> str:
    """One component of a segment's first repetition; '' when absent (KeyError when the segment is)."""
    try:
        return str(message.extract_field(segment, 1, field, 1, component)).strip()
    except IndexError:
        return ""


def _time(raw: str, where: str, field: int, zone: ZoneInfo) -> datetime | None:
    if not raw:
        return None
    found = _TS.match(raw)
    if found is None:
        raise AdtRefused("AE", f"{where} {raw!r} is not an HL7 timestamp (YYYYMMDDHHMM[SS][+ZZZZ])",
                         error="102", location=("PV1", field))
    year, month, day, hour, minute, second, offset = found.groups()
    try:
        local = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError as err:
        raise AdtRefused("AE", f"{where} {raw!r} is not a valid date: {err}", error="102",
                         location=("PV1", field)) from None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        minutes = sign * (int(offset[1:3]) * 60 + int(offset[3:5]))
        return local.replace(tzinfo=timezone(timedelta(minutes=minutes))).astimezone(UTC)
    return local.replace(tzinfo=zone).astimezone(UTC)


def event_label(message: hl7.Message | None) -> str:
    """The metrics label of a message: its ADT trigger event (A01…A99), 'non-adt', or 'unknown' (unparsed).

    Bounded: a sender's free text in MSH-9 never becomes a new time series.
    """
    if message is None:
        return "unknown"
    try:
        kind, event = _field(message, "MSH", 9, 1), _field(message, "MSH", 9, 2)
    except Exception:  # noqa: BLE001 - an MSH too broken to read
        return "unknown"
    if kind != "ADT":
        return "non-adt"
    return event if re.fullmatch(r"A\d\d", event) else "unknown"


def parse_adt(text: str, *, time_zone: str) -> tuple[hl7.Message, AdtEvent | None]:
    """The parsed message and its event; None for an ADT event careloom does not use (accept, ignore).

    Raises :class:`AdtRefused` for a message it cannot use, with the field at fault. Linear in the size of
    the text: see :func:`read_segments`.
    """
    if not text.lstrip().startswith("MSH"):
        raise AdtRefused("AR", "not an HL7 v2 message: it must begin with an MSH segment", error="100",
                         location=("MSH", None))
    message, msh_count = read_segments(text.replace("\r\n", "\r").replace("\n", "\r"))
    if msh_count > 1:
        # A second MSH is a second message (or a smuggled one): which of them is "the" event is ambiguous, and
        # the hl7 library would read fields of one and segments of the other.
        raise AdtRefused("AR", f"the frame holds {msh_count} MSH segments; send one message per MLLP frame "
                               "(batches and nested messages are not accepted)", message, error="100",
                         location=("MSH", None))
    try:
        return message, _event(message, time_zone)
    except AdtRefused as refused:
        refused.message = message
        raise


def read_segments(text: str) -> tuple[hl7.Message, int]:
    """The message reduced to the segments careloom reads (MSH, the first PID and PV1), and its MSH count.

    ``hl7.parse`` of a whole message builds several objects per field of every segment, and each field
    lookup scans every segment: 40,000 NTE segments took seconds, growing faster than the text (the garbage
    collector re-walks the growing tree). Splitting the text once and parsing the three segments used keeps
    the work linear in the text and the object tree small; what careloom reads is the same (the first
    segment of each id, as ``extract_field`` does).
    """
    segments = text.strip().split("\r")
    head = segments[0]
    separator = head[3:4]
    if len(head) < 8 or separator.isalnum() or separator.isspace():
        raise AdtRefused("AR", "the MSH segment is too short or has no field separator (MSH-1)", error="100",
                         location=("MSH", 1))
    kept: dict[str, str] = {}
    msh_count = 0
    for segment in segments:
        if segment.lstrip().startswith("MSH"):  # counted however it is indented: a hidden MSH is still one
            msh_count += 1
        end = segment.find(separator, 0, 8)
        name = segment[:end] if end >= 0 else segment[:8]
        if name in _READ and name not in kept:
            kept[name] = segment
    try:
        message = hl7.parse("\r".join(kept[name] for name in _READ if name in kept))
        message.segment("MSH")
    except Exception as err:  # noqa: BLE001 - the library raises several types for malformed text
        raise AdtRefused("AR", f"the message could not be parsed as HL7 v2 ({type(err).__name__})",
                         error="100", location=("MSH", None)) from None
    return message, msh_count


def sender_of(message: hl7.Message) -> tuple[str, str]:
    """(MSH-3 sending application, MSH-4 sending facility), first components; '' when absent."""
    return _field(message, "MSH", 3), _field(message, "MSH", 4)


def _event(message: hl7.Message, time_zone: str) -> AdtEvent | None:
    version = _field(message, "MSH", 12)
    if not _VERSION.match(version):
        raise AdtRefused("AR", f"MSH-12 version {version or '(empty)'!r} is not supported; send HL7 v2.3 to v2.9",
                         error="203", location=("MSH", 12))
    kind, event = _field(message, "MSH", 9, 1), _field(message, "MSH", 9, 2)
    if kind != "ADT":
        raise AdtRefused("AR", f"MSH-9 message type {kind or '(empty)'}^{event} is not ADT; this listener takes "
                               "ADT^A01/A03/A04/A08/A11/A13", error="200", location=("MSH", 9))
    control_id = _field(message, "MSH", 10)
    if not control_id:
        raise AdtRefused("AR", "MSH-10 message control id is empty", error="101", location=("MSH", 10))
    if event not in SUPPORTED_EVENTS:
        return None
    for segment in ("PID", "PV1"):
        try:
            message.segment(segment)
        except KeyError:
            raise AdtRefused("AE", f"ADT^{event} without a {segment} segment", error="100",
                             location=(segment, None)) from None
    member = _field(message, "PID", 3, 1)
    if not member:
        raise AdtRefused("AE", "PID-3 (patient identifier) is empty", error="101", location=("PID", 3))
    encounter = _field(message, "PV1", 19, 1)
    if not encounter:
        raise AdtRefused("AE", "PV1-19 (visit number) is empty: it identifies the encounter", error="101",
                         location=("PV1", 19))
    if not re.match(r"^[A-Za-z0-9\-.]{1,64}$", encounter):
        raise AdtRefused("AE", "PV1-19 (visit number) must be 1-64 letters, digits, '-' or '.' (a FHIR id)",
                         error="102", location=("PV1", 19))
    raw_class = _field(message, "PV1", 2)
    if raw_class and raw_class not in _CLASSES:
        raise AdtRefused("AE", f"PV1-2 patient class {raw_class!r} is not supported (I, E or O)", error="103",
                         location=("PV1", 2))
    zone = ZoneInfo(time_zone)
    admitted = _time(_field(message, "PV1", 44), "PV1-44 admit time", 44, zone)
    discharged = _time(_field(message, "PV1", 45), "PV1-45 discharge time", 45, zone)
    if event == "A03" and discharged is None:
        raise AdtRefused("AE", "ADT^A03 without PV1-45 (discharge date/time)", error="101",
                         location=("PV1", 45))
    disposition = _field(message, "PV1", 36) or None
    admission_type = _field(message, "PV1", 4).upper()
    priority = _ADMISSION_TYPES.get(admission_type)
    if admission_type and priority is None:
        # Not refused (an AE would hold the discharge back): the acuity stays unrecorded, LACE unscored.
        log.info("adt.admission_type_unmapped", hl7_event=event, control_id=control_id,
                 admission_type=admission_type[:8])
    return AdtEvent(event=event, control_id=control_id, member_id=member, encounter_id=encounter,
                    patient_class=_CLASSES.get(raw_class) if raw_class else None, admitted_at=admitted,
                    discharged_at=discharged, disposition=disposition, facility=sender_of(message)[1],
                    priority=priority)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _facility_code(facility: str) -> str:
    # A FHIR code has no repeated or edge whitespace: "A  B" would fail validation and refuse the feed's A03.
    return " ".join(facility.split())


def owner_of(encounter: dict[str, Any] | None) -> str | None:
    """The MSH-4 facility whose ADT feed created this Encounter; None if none did (imported from files)."""
    for tag in ((encounter or {}).get("meta") or {}).get("tag") or ():
        if isinstance(tag, dict) and tag.get("system") == FACILITY_TAG_SYSTEM and tag.get("code"):
            return str(tag["code"])
    return None


def check_owner(event: AdtEvent, existing: dict[str, Any] | None) -> None:
    """Refuse (AR) an event for an Encounter another facility's feed created: nothing is applied.

    Without it, any allowed sender could cancel another hospital's discharge (an A13 withdraws its run) or
    rewrite its episode. Ownership is MSH-4 alone: the facility owns its visits whichever application
    (MSH-3: its EHR, an interface engine) relays them. An Encounter with no owner (imported from files,
    or created from a message with an empty MSH-4) takes events from any allowed sender, as before.
    """
    owner = owner_of(existing)
    if owner is None or owner == _facility_code(event.facility):
        return
    # Facility names and the control id only: the visit number and PID-3 identify a patient.
    log.warning("adt.encounter_owner_refused", hl7_event=event.event, control_id=event.control_id,
                sending_facility=event.facility[:64], owner_facility=owner[:64])
    raise AdtRefused("AR", f"MSH-4 sending facility {event.facility[:64] or '(empty)'!r} may not change this "
                           "PV1-19 visit: another facility's ADT feed created it; nothing was applied. If the "
                           "visit is yours, prefix your visit numbers", error="207", location=("MSH", 4))


def apply_event(event: AdtEvent, existing: dict[str, Any] | None) -> dict[str, Any]:
    """The Encounter after this event (a new one, or the stored one changed); validate before storing.

    Raises :class:`AdtRefused` (AR) for an Encounter another facility's feed created (:func:`check_owner`).
    """
    check_owner(event, existing)
    enc: dict[str, Any] = dict(existing) if existing else {
        "resourceType": "Encounter", "id": event.encounter_id, "status": "in-progress",
        "subject": {"reference": f"Patient/{event.member_id}"},
    }
    if not existing and _facility_code(event.facility):
        enc["meta"] = {"tag": [{"system": FACILITY_TAG_SYSTEM, "code": _facility_code(event.facility)}]}
    if existing and enc.get("subject", {}).get("reference") != f"Patient/{event.member_id}":
        raise AdtRefused("AE", f"PV1-19 visit {event.encounter_id} belongs to another patient than PID-3",
                         error="205", location=("PV1", 19))
    klass = event.patient_class or (enc.get("class") or {}).get("code") or "IMP"
    enc["class"] = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass}
    if event.priority and event.event in ("A01", "A03", "A04", "A08"):
        enc["priority"] = {"coding": [{"system": _PRIORITY_SYSTEM, "code": event.priority}]}
    period = dict(enc.get("period") or {})
    if event.admitted_at:
        period["start"] = _iso(event.admitted_at)
    if event.event == "A03":
        enc["status"] = "finished"
        period["end"] = _iso(event.discharged_at)  # type: ignore[arg-type]  # checked in parse_adt
        if "start" not in period:
            period["start"] = period["end"]
    elif event.event == "A13":
        enc["status"] = "in-progress"
        period.pop("end", None)
    elif event.event == "A11":
        enc["status"] = "cancelled"
    elif event.event in ("A01", "A04"):
        enc["status"] = "in-progress"
    elif event.event == "A08" and event.discharged_at and enc.get("status") == "finished":
        period["end"] = _iso(event.discharged_at)
    if period:
        enc["period"] = period
    if event.disposition and event.event in ("A03", "A08"):
        code = _DISPOSITIONS.get(event.disposition.zfill(2), "oth")
        hosp = dict(enc.get("hospitalization") or {})
        hosp["dischargeDisposition"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/discharge-disposition", "code": code}]}
        enc["hospitalization"] = hosp
    elif event.event == "A13" and "hospitalization" in enc:
        hosp = {k: v for k, v in enc["hospitalization"].items() if k != "dischargeDisposition"}
        if hosp:
            enc["hospitalization"] = hosp
        else:
            enc.pop("hospitalization")
    return enc
