"""A member's FHIR R4 resources from the care records store, as the CQL quality measures read them.

What: :func:`member_resources` returns the member's Patient plus every stored resource of the types the shipped
measures retrieve (``MEASURE_TYPES``), as plain dicts for :func:`tools.quality_measures.evaluate_member`;
:func:`patient_ids` lists the members the store holds a Patient for (a population evaluation walks them).

Why: the measures decide from a member's records, not from one run's state; reading only the types the CQL
retrieves keeps a member's evaluation small (no Claims, Tasks or Communications). A measure that starts
retrieving another type must add it to ``MEASURE_TYPES`` (tests/tools/test_care_gap_report.py checks every
shipped library's retrieves against it) and, if the store does not file it under a member yet, to
``store.records.MEMBER_PATHS``.
"""

from __future__ import annotations

from typing import Any

from store.sql_records import SqlCareRecordStore

__all__ = ["MEASURE_TYPES", "member_resources", "patient_ids"]

MEASURE_TYPES: tuple[str, ...] = ("Condition", "Encounter", "Observation", "Procedure")
"""The resource types the shipped CQL libraries retrieve, besides the Patient (Coverage is not read)."""


def member_resources(store: SqlCareRecordStore, member_id: str) -> list[dict[str, Any]]:
    """The member's Patient first, then their stored Condition, Encounter, Observation and Procedure resources.

    Empty when the store holds no Patient/<member_id>: a member without a Patient cannot be evaluated.
    """
    patient = store.get("Patient", member_id)
    if patient is None:
        return []
    resources = [patient]
    for resource_type in MEASURE_TYPES:
        resources.extend(store.find_for_member(resource_type, member_id))
    return resources


def patient_ids(store: SqlCareRecordStore) -> list[str]:
    """The id of every Patient in the store, in id order."""
    rows = store.db.read(lambda r: r.rows("SELECT id FROM resources WHERE resource_type = :t ORDER BY id",
                                          {"t": "Patient"}))
    return [str(row[0]) for row in rows]
