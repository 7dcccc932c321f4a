"""Synthea-style FHIR transaction Bundles: one file per synthetic patient, entries linked by urn:uuid fullUrls."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.fhir_factory import make_member

__all__ = ["synthea_bundle", "write_bundle_folder"]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def synthea_bundle(*, discharged_at: datetime | None = None, codes: tuple[str, ...] = ("I50.9",),
                   **member_options: Any) -> tuple[dict[str, Any], str, str]:
    """(Bundle, patient uuid, inpatient encounter uuid): resources without ids, referenced by urn:uuid.
    ``member_options``: more of :func:`tests.fhir_factory.make_member`'s (e.g. deceased, earlier_stays)."""
    member = make_member(discharged_at=discharged_at or datetime.now(UTC) - timedelta(hours=5), codes=codes,
                         **member_options)
    ids = {f"{r['resourceType']}/{r['id']}": str(uuid.uuid4()) for r in member.resources}
    entries = []
    for resource in member.resources:
        key = f"{resource['resourceType']}/{resource['id']}"
        body = json.loads(json.dumps(resource))
        body.pop("id")
        text = json.dumps(body)
        for ref, new in ids.items():  # Synthea references other entries by their fullUrl
            text = text.replace(f'"{ref}"', f'"urn:uuid:{new}"')
        entries.append({"fullUrl": f"urn:uuid:{ids[key]}", "resource": json.loads(text),
                        "request": {"method": "POST", "url": resource["resourceType"]}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return bundle, ids[f"Patient/{member.member_id}"], ids[f"Encounter/{member.encounter_id}"]


def write_bundle_folder(folder: Path, count: int, **options: Any) -> list[tuple[str, str]]:
    """``count`` patient Bundles as ``<n>.json`` in ``folder``; (patient id, inpatient encounter id) of each."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in range(count):
        bundle, patient, encounter = synthea_bundle(**options)
        (folder / f"patient-{n}.json").write_text(json.dumps(bundle, indent=1))
        out.append((patient, encounter))
    return out
