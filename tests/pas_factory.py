"""Da Vinci PAS-style prior-authorization request Bundles for tests (and the shipped samples).

:func:`build_pas_bundle` is pure; :func:`make_pas_request` first stores a member (Patient and
Coverage, through tests.fhir_factory) and builds a request for them. Every call has its own ids.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from evaluation.synthetic import (
    CPT,
    HOME_HEALTH_NOTES_MET,
    MRI_NOTES_AGAINST,
    MRI_NOTES_MET,
    MRI_NOTES_MISSING_THERAPY,
    SNF_NOTES_MET,
    build_pas_bundle,
    code_system,
)
from store.records import CareRecordStore
from tests.fhir_factory import Member, make_member

__all__ = [
    "CPT",
    "HOME_HEALTH_NOTES_MET",
    "MRI_NOTES_AGAINST",
    "MRI_NOTES_MET",
    "MRI_NOTES_MISSING_THERAPY",
    "PasRequest",
    "SNF_NOTES_MET",
    "build_pas_bundle",
    "code_system",
    "make_pas_request",
]

@dataclass
class PasRequest:
    """A request Bundle and the ids it carries."""

    bundle: dict[str, Any]
    member: Member
    claim_id: str
    member_id: str
    coverage_id: str
    provider_id: str
    note_ids: list[str] = field(default_factory=list)


def make_pas_request(
    store: CareRecordStore | None = None,
    *,
    member: Member | None = None,
    unknown_member: bool = False,
    unknown_coverage: bool = False,
    omit_notes: bool = False,
    **options: Any,
) -> PasRequest:
    """A request for a member stored in ``store`` (made here unless given); options go to build_pas_bundle."""
    tag = uuid.uuid4().hex[:10]
    member = member or make_member(store)
    patient = copy.deepcopy(member.resources[0])
    coverage = copy.deepcopy(next(r for r in member.resources if r["resourceType"] == "Coverage"))
    if unknown_member:
        patient["id"] = f"pt-unknown-{tag}"
        coverage["beneficiary"] = {"reference": f"Patient/{patient['id']}"}
    if unknown_coverage:
        coverage["id"] = f"cov-unknown-{tag}"
    if omit_notes:
        options["notes"] = ()
    bundle = build_pas_bundle(patient=patient, coverage=coverage, tag=tag, **options)
    notes = options.get("notes", MRI_NOTES_MET)
    return PasRequest(bundle=bundle, member=member, claim_id=f"claim-{tag}", member_id=patient["id"],
                      coverage_id=coverage["id"], provider_id=f"prac-{tag}",
                      note_ids=[f"note-{tag}-{n}" for n in range(len(notes))])
