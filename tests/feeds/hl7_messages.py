"""HL7 v2 ADT messages for tests: synthetic people only, segments joined with \\r."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

__all__ = ["adt", "frame", "hl7_time"]


def hl7_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def adt(event: str, member_id: str, encounter_id: str, *, discharged_at: datetime | None = None,
        admitted_at: datetime | None = None, patient_class: str = "I", version: str = "2.5.1",
        message_type: str = "ADT", control_id: str | None = None, disposition: str = "01",
        include_discharge: bool = True, admission_type: str = "") -> str:
    """One ADT message (or another type, for refusal tests); ``admission_type`` is PV1-4 (HL7 table 0007: E
    emergency, U urgent, R routine, C elective...), empty by default as many feeds send it."""
    discharged = discharged_at or datetime.now(UTC) - timedelta(hours=4)
    admitted = admitted_at or discharged - timedelta(days=3)
    control = control_id or uuid.uuid4().hex[:20]
    pv1 = ["PV1", "1", patient_class] + [""] * 16 + [encounter_id] + [""] * 16 + [disposition] + [""] * 7
    pv1[4] = admission_type
    pv1 += [hl7_time(admitted), hl7_time(discharged) if include_discharge and event in ("A03", "A08") else ""]
    segments = [
        (f"MSH|^~\\&|HOSP_ADT|GENERAL_HOSPITAL|CARELOOM|PLAN|{hl7_time(datetime.now(UTC))}||"
         f"{message_type}^{event}^{message_type}_{event}|{control}|P|{version}"),
        f"EVN|{event}|{hl7_time(datetime.now(UTC))}",
        f"PID|1||{member_id}^^^GENERAL_HOSPITAL^MR||Synthetic^Pat||19500505|F",
        "|".join(pv1),
    ]
    return "\r".join(segments) + "\r"


def frame(message: str) -> bytes:
    """The MLLP frame of one message: <VT> message <FS><CR>."""
    return b"\x0b" + message.encode() + b"\x1c\x0d"
