"""Review of issue 21.6 (fixed): a refused NDJSON Patient still got the other person's records.

Two NDJSON exports that reuse a Patient id for two people, imported at once: the second Patient line is skipped
as a conflict, but the second export's Encounter (its own id, no conflict) is imported with
``subject: Patient/<reused id>``, so the second person's stay now hangs off the first person, which is the harm
issue 21.6 describes, and ``import --start-outreach`` would contact the first person about it. Bundles are
skipped whole for exactly this reason (store/importer.py import_bundles); import_ndjson skipped the line only.
Now the refused Patient's records of its own export are held (tests/store/test_import_held_records.py).
"""

from __future__ import annotations

import json


from store.importer import import_ndjson


def _encounter(eid: str, pid: str) -> str:
    return json.dumps({"resourceType": "Encounter", "id": eid, "status": "finished",
                       "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                       "subject": {"reference": f"Patient/{pid}"},
                       "period": {"start": "2024-06-01T10:00:00Z", "end": "2024-06-04T10:00:00Z"}})


def test_records_of_a_refused_patient_are_not_attached_to_the_kept_one(store, tmp_path) -> None:
    for export, birth, encounter in (("a", "1950-01-01", "enc-a"), ("b", "1990-05-05", "enc-b")):
        folder = tmp_path / "exports" / export
        folder.mkdir(parents=True)
        (folder / "Patient.ndjson").write_text(json.dumps(
            {"resourceType": "Patient", "id": "p-shared", "gender": "female", "birthDate": birth}) + "\n")
        (folder / "Encounter.ndjson").write_text(_encounter(encounter, "p-shared") + "\n")
    report = import_ndjson(store, tmp_path / "exports")

    assert (1, "1950-01-01") == (report.conflicts, store.get("Patient", "p-shared")["birthDate"])
    stays = sorted(e["id"] for e in store.find_for_member("Encounter", "p-shared"))
    assert ["enc-a"] == stays, f"the 1990-born person's stay hangs off the 1950-born member: {stays}"
