"""FHIR Bundle import (Synthea-style transaction Bundles), on a real SQLite store; no server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.errors import ImportFailure
from store.importer import import_bundles, import_path
from store.sql_records import SqlCareRecordStore
from tests.bundle_factory import synthea_bundle, write_bundle_folder
from tests.databases import fresh_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlCareRecordStore]:
    with fresh_store(tmp_path) as records:
        yield records


def _entry_index(bundle: dict, rtype: str) -> int:
    return next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == rtype)


def _write(path: Path, bundle: dict) -> Path:
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def test_a_folder_of_transaction_bundles_imports_with_references_resolved(tmp_path, store) -> None:
    """Every entry imports; urn:uuid references become Type/id, and ids come from the fullUrl uuid."""
    people = write_bundle_folder(tmp_path / "synthea", 3)
    report = import_path(store, tmp_path / "synthea")

    assert (0, 3) == (report.skipped, report.as_dict()["by_type"]["Patient"]["inserted"])
    for patient, encounter in people:
        stored = store.get("Encounter", encounter)
        assert f"Patient/{patient}" == stored["subject"]["reference"]
        assert store.get("Patient", patient) is not None
        assert [patient] == [c["beneficiary"]["reference"].split("/")[1]
                             for c in store.find_for_member("Coverage", patient)]
        assert store.find_for_member("Condition", patient)  # Condition.subject resolved too
    assert {e for _, e in people} <= set(report.encounters)
    assert len(report.encounters) == len(set(report.encounters)) == 6  # inpatient + ED visit per patient


def test_reimporting_the_same_bundles_changes_nothing(tmp_path, store) -> None:
    """Derived ids and rewritten references are deterministic: a second import is all unchanged."""
    write_bundle_folder(tmp_path / "synthea", 2)
    first = import_path(store, tmp_path / "synthea")
    count = store.count()
    again = import_path(store, tmp_path / "synthea")
    assert first.total("inserted") == again.total("unchanged") == count > 0
    assert (0, 0) == (again.total("inserted"), again.total("updated"))
    assert sorted(first.encounters) == sorted(again.encounters)


def test_an_invalid_entry_is_skipped_with_its_file_and_index_and_the_rest_imported(tmp_path, store) -> None:
    """`file: entry N (Type): message`, N counted from 1; the other entries of the Bundle still import."""
    bundle, patient, encounter = synthea_bundle()
    index = _entry_index(bundle, "Encounter")
    bundle["entry"][index]["resource"]["period"]["start"] = "yesterday"  # not a FHIR dateTime
    path = _write(tmp_path / "one.json", bundle)
    report = import_path(store, path)

    [problem] = report.problems
    assert str(problem).startswith(f"{path}: entry {index + 1} (Encounter): Encounter is not valid FHIR R4:")
    assert "period" in str(problem)
    assert store.get("Patient", patient) is not None and store.get("Encounter", encounter) is None
    assert report.total("inserted") == len(bundle["entry"]) - 1
    assert encounter not in report.encounters


def test_a_reference_to_no_entry_of_the_bundle_is_skipped_not_stored_dangling(tmp_path, store) -> None:
    """An urn:uuid reference that no fullUrl in the Bundle matches would point nowhere: the entry is skipped."""
    bundle, patient, encounter = synthea_bundle()
    index = _entry_index(bundle, "Encounter")
    stray = f"urn:uuid:{uuid.uuid4()}"
    bundle["entry"][index]["resource"]["subject"]["reference"] = stray
    report = import_path(store, _write(tmp_path / "dangling.json", bundle))

    [problem] = report.problems
    assert f"entry {index + 1} (Encounter): references {stray}, which no entry" in str(problem)
    assert store.get("Encounter", encounter) is None and store.get("Patient", patient) is not None


def test_resources_that_carry_ids_keep_them_and_put_urls_give_one(tmp_path, store) -> None:
    """Synthea writes ids (= the fullUrl uuid); a PUT Type/id names the id when the resource has none."""
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": {"resourceType": "Patient", "id": "pt-kept"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/pt-put"}},
        {"resource": {"resourceType": "Patient", "id": "pt-a"}, "request": {"method": "PUT", "url": "Patient/pt-b"}},
        {"resource": {"resourceType": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/pt-gone"}},
    ]}
    report = import_bundles(store, _write(tmp_path / "batch.json", bundle))

    assert store.get("Patient", "pt-kept") and store.get("Patient", "pt-put")
    assert [3, 4, 5] == [p.entry for p in report.problems]
    assert "names id 'pt-b' but the resource's id is 'pt-a'" in str(report.problems[0])
    assert "no id and the entry no urn:uuid fullUrl" in str(report.problems[1])
    assert "request.method DELETE is not imported" in str(report.problems[2])


def test_files_that_are_not_bundles_are_reported_by_name(tmp_path, store) -> None:
    """Broken JSON (with its line), a bare resource and a message Bundle are each one problem naming the file."""
    folder = tmp_path / "mixed"
    write_bundle_folder(folder, 1)
    (folder / "broken.json").write_text('{"resourceType": "Bundle",\n "entry": [')
    (folder / "patient.json").write_text('{"resourceType": "Patient", "id": "p1"}')
    (folder / "message.json").write_text('{"resourceType": "Bundle", "type": "message", "entry": []}')
    report = import_path(store, folder)

    messages = sorted(str(p) for p in report.problems)
    assert 3 == len(messages)
    assert any(f"{folder / 'broken.json'}:2: not valid JSON" in m for m in messages)
    assert any(f"{folder / 'patient.json'}: holds a Patient, not a FHIR Bundle" in m for m in messages)
    assert any(f"{folder / 'message.json'}: Bundle type 'message' is not imported" in m for m in messages)
    assert 1 == report.as_dict()["by_type"]["Patient"]["inserted"]
    assert store.get("Patient", "p1") is None


def test_a_document_bundle_and_a_byte_order_mark_are_accepted(tmp_path, store) -> None:
    """Document Bundles' entries are records too; a UTF-8 BOM (common from Windows tools) is not an error."""
    bundle, patient, _ = synthea_bundle()
    bundle["type"] = "document"
    (tmp_path / "doc.json").write_text(json.dumps(bundle), encoding="utf-8-sig")
    report = import_path(store, tmp_path / "doc.json")

    assert ([], True) == (report.problems, store.get("Patient", patient) is not None)


def test_a_bulk_data_folder_ignores_its_json_files_and_lists_them(tmp_path, store) -> None:
    """A folder with *.ndjson is Bulk Data: a manifest.json (or a Bundle) beside it is listed, not imported."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "pt-bulk"}) + "\n")
    (folder / "manifest.json").write_text('{"transactionTime": "2024-01-01T00:00:00Z", "output": []}')
    _write(folder / "patient.json", synthea_bundle()[0])
    report = import_path(store, folder)

    assert ([], [str(folder / "manifest.json"), str(folder / "patient.json")]) == (report.problems, report.ignored)
    assert store.get("Patient", "pt-bulk") and store.count() == 1


def test_ndjson_import_reports_its_encounters_too(tmp_path, store) -> None:
    """--start-outreach works for Bulk Data as well: the report names the Encounters imported."""
    folder = tmp_path / "bulk"
    folder.mkdir()
    bundle, _, encounter = synthea_bundle()
    import_path(store, _write(tmp_path / "b.json", bundle))
    (folder / "Encounter.ndjson").write_text(json.dumps(store.get("Encounter", encounter)) + "\n")

    assert [encounter] == import_path(store, folder).encounters


def test_a_folder_with_nothing_to_import_names_what_it_expected(tmp_path, store) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFailure, match=r"empty holds no \*\.ndjson or \*\.json files; expected FHIR Bulk"):
        import_path(store, tmp_path / "empty")


def _reuse_patient_ids(first: Path, second: Path, count: int) -> list[tuple[str, str, str]]:
    """Two Synthea-style folders whose n-th Bundles give the same Patient id to different people (as two
    exports generated with one seed do); (shared patient id, first's encounter, second's encounter) each."""
    a = write_bundle_folder(first, count)
    b = write_bundle_folder(second, count)
    for n, ((patient_a, _), (patient_b, _)) in enumerate(zip(a, b, strict=True)):
        path = second / f"patient-{n}.json"
        path.write_text(path.read_text().replace(patient_b, patient_a))
    return [(pa, ea, eb) for (pa, ea), (_, eb) in zip(a, b, strict=True)]


def test_two_folders_reusing_patient_ids_are_refused_naming_both_places(tmp_path, store) -> None:
    """One import of two folders that give the same Patient ids to different people keeps the first folder's
    Bundles and refuses each of the second's whole, naming both entries (before: the second silently
    overwrote the first, so the first person's record held the second's name and both people's stays)."""
    shared = _reuse_patient_ids(tmp_path / "both" / "a", tmp_path / "both" / "b", 3)
    first_patients = {p: json.loads((tmp_path / "both" / "a" / f"patient-{n}.json").read_text())
                      for n, (p, _, _) in enumerate(shared)}
    report = import_path(store, tmp_path / "both")

    assert 3 == report.conflicts == len(report.problems)
    for n, (patient, first_encounter, second_encounter) in enumerate(shared):
        problem = str(report.problems[n])
        assert problem.startswith(f"{tmp_path / 'both' / 'b' / f'patient-{n}.json'}: entry 1 (Patient): "
                                  f"Patient/{patient} conflicts with {tmp_path / 'both' / 'a' / f'patient-{n}.json'}"
                                  " entry 1: the same id with different content in one import"), problem
        assert "Give the resources of one export other ids" in problem
        assert store.get("Encounter", first_encounter) is not None
        assert store.get("Encounter", second_encounter) is None  # nothing of the refused Bundle imported
        name = first_patients[patient]["entry"][0]["resource"]["name"]
        assert name == store.get("Patient", patient)["name"]
        assert [first_encounter] == [e["id"] for e in store.find_for_member("Encounter", patient)
                                     if e["class"]["code"] == "IMP"]
    assert (0, report.total("inserted")) == (report.total("updated"), store.count())


def test_reimporting_conflicting_folders_reports_everything_unchanged(tmp_path, store) -> None:
    """Re-importing the same two folders changes nothing: every imported resource unchanged, none updated
    (before: each import flipped the shared ids back and forth and reported them updated), the same refusals."""
    _reuse_patient_ids(tmp_path / "both" / "a", tmp_path / "both" / "b", 2)
    first = import_path(store, tmp_path / "both")
    again = import_path(store, tmp_path / "both")

    assert (0, 0, first.total("inserted")) == (again.total("inserted"), again.total("updated"),
                                              again.total("unchanged"))
    assert [str(p) for p in first.problems] == [str(p) for p in again.problems] and 2 == again.conflicts


def test_the_same_resource_in_two_bundles_is_no_conflict(tmp_path, store) -> None:
    """A resource repeated with identical content (e.g. a shared Organization) imports once, no problem."""
    org = {"resourceType": "Organization", "id": "org-shared", "name": "General Hospital"}
    for n in range(2):
        bundle, _, _ = synthea_bundle()
        bundle["entry"].append({"fullUrl": "Organization/org-shared", "resource": dict(org)})
        _write(tmp_path / f"p{n}.json", bundle)
    report = import_path(store, tmp_path)

    assert ([], 0, 1) == (report.problems, report.conflicts, report.as_dict()["by_type"]["Organization"]["inserted"])
