"""NDJSON imports that reuse a Patient id for two people (issue 21.6, review): the refused Patient's records are
held, not attached to the kept person; a later import that changes a Patient's identity is a warning."""

from __future__ import annotations

import json
from pathlib import Path

from store.importer import import_ndjson

_IMP = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}


def _patient(pid: str, birth: str, family: str = "Doe") -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": birth,
            "name": [{"family": family, "given": ["Ann"]}]}


def _encounter(eid: str, pid: str) -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "class": _IMP,
            "subject": {"reference": f"Patient/{pid}"},
            "period": {"start": "2024-06-01T10:00:00Z", "end": "2024-06-04T10:00:00Z"}}


def _condition(cid: str, eid: str) -> dict:
    """A Condition that names its Encounter only (its subject is elsewhere): held through the Encounter."""
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": "Group/cohort"},
            "encounter": {"reference": f"Encounter/{eid}"}, "code": {"text": "heart failure"}}


def _export(folder: Path, **files: list[dict]) -> None:
    folder.mkdir(parents=True)
    for rtype, resources in files.items():
        (folder / f"{rtype}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))


def test_the_refused_patients_export_keeps_its_records_out_and_names_each(store, tmp_path) -> None:
    """Export b reuses p-1 for another person: its Encounter (directly) and Condition (through the Encounter) are
    held, each a problem naming the refused line; its record of another member (p-2) is imported; export a's
    stay stays the only one of p-1, and only it is offered for outreach."""
    root = tmp_path / "exports"
    _export(root / "a", Patient=[_patient("p-1", "1950-01-01")], Encounter=[_encounter("enc-a", "p-1")])
    _export(root / "b", Patient=[_patient("p-1", "1990-05-05"), _patient("p-2", "1970-01-01")],
            Encounter=[_encounter("enc-b", "p-1"), _encounter("enc-c", "p-2")],
            Condition=[_condition("cond-b", "enc-b")])
    report = import_ndjson(store, root)

    assert (1, 2) == (report.conflicts, report.held)
    assert (["enc-a"], ["enc-c"]) == ([e["id"] for e in store.find_for_member("Encounter", "p-1")],
                                      [e["id"] for e in store.find_for_member("Encounter", "p-2")])
    assert (None, None, ["enc-a", "enc-c"]) == (store.get("Encounter", "enc-b"), store.get("Condition", "cond-b"),
                                                report.encounters)
    refused_line = f"{root / 'b' / 'Patient.ndjson'}:1"
    held = {p.message.split(" ")[0]: str(p) for p in report.problems if " held, not imported" in p.message}
    assert ["Condition/cond-b", "Encounter/enc-b"] == sorted(held)
    assert f"{root / 'b' / 'Encounter.ndjson'}:1: Encounter/enc-b held, not imported: it references Patient/p-1, " \
           f"whose line {refused_line} was refused" in held["Encounter/enc-b"]
    assert "references held Encounter/enc-b" in held["Condition/cond-b"]
    assert 2 == report.as_dict()["held"]


def test_both_versions_in_one_folder_hold_every_record_of_the_id(store, tmp_path) -> None:
    """Two Patient files of one export give p-9 two birth dates: whose stay is whose cannot be told, so both
    stays are held (none imported, none contacted) and the problem says why."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Patient.001.ndjson").write_text(json.dumps(_patient("p-9", "1950-01-01")) + "\n")
    (folder / "Patient.002.ndjson").write_text(json.dumps(_patient("p-9", "1990-05-05")) + "\n")
    (folder / "Encounter.ndjson").write_text(json.dumps(_encounter("enc-9a", "p-9")) + "\n"
                                             + json.dumps(_encounter("enc-9b", "p-9")) + "\n")
    report = import_ndjson(store, folder)

    assert (1, 2, [], []) == (report.conflicts, report.held, report.encounters,
                              store.find_for_member("Encounter", "p-9"))
    assert all("both versions come from this folder" in p.message for p in report.problems if "held" in p.message)


def test_a_clean_reimport_holds_nothing_and_warns_nothing(store, tmp_path) -> None:
    """One export imported twice: no conflict, nothing held, no warning, everything unchanged."""
    root = tmp_path / "one"
    _export(root, Patient=[_patient("p-5", "1950-01-01")], Encounter=[_encounter("enc-5", "p-5")])
    import_ndjson(store, root)
    again = import_ndjson(store, root)

    assert (0, 0, [], [], 2) == (again.conflicts, again.held, again.problems, again.warnings,
                                 again.total("unchanged"))


def test_a_later_import_that_changes_a_patients_identity_is_a_warning(store, tmp_path) -> None:
    """A second, separate import gives Patient/p-7 another birth date and family name: imported (it may be a
    correction) and reported as a warning naming both fields; a change of gender alone is no warning."""
    _export(tmp_path / "first", Patient=[_patient("p-7", "1950-01-01")])
    _export(tmp_path / "second", Patient=[_patient("p-7", "1990-05-05", family="Roe")])
    _export(tmp_path / "third", Patient=[{**_patient("p-7", "1990-05-05", family="Roe"), "gender": "male"}])
    import_ndjson(store, tmp_path / "first")
    second = import_ndjson(store, tmp_path / "second")
    third = import_ndjson(store, tmp_path / "third")

    assert [w.split(" since")[0] for w in second.warnings] == ["Patient/p-7 changed identity fields (name, birthDate)"]
    assert ([], 1) == (third.warnings, third.total("updated"))
    assert second.warnings == second.as_dict()["warnings"]
