"""Synthetic FHIR R4 members for tests, shaped like clinosim's output (see sample_data/README.md).

Every test makes its own members with unique ids, so tests never share records.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from evaluation.synthetic import member_resources
from store.records import CareRecordStore

__all__ = ["HIGH_RISK", "Member", "make_member"]

HIGH_RISK = {"los_days": 7, "codes": ("I50.9",), "ed_visits": 1}
"""A high readmission risk discharge: L5 A3 C1 E1 = LACE 10."""


@dataclass
class Member:
    member_id: str
    encounter_id: str
    resources: list[dict[str, Any]] = field(default_factory=list)


def make_member(
    store: CareRecordStore | None = None,
    *,
    tag: str | None = None,
    **options: Any,
) -> Member:
    """One member with an inpatient stay (options: :func:`evaluation.synthetic.member_resources`); stored if a
    store is given. Defaults give LACE = L2 + A3 + C0 + E0 = 5 with no codes.
    """
    member_id, encounter_id, resources = member_resources(tag or uuid.uuid4().hex[:10], **options)
    member = Member(member_id=member_id, encounter_id=encounter_id, resources=resources)
    if store is not None:
        store.put_many(resources)
    return member
