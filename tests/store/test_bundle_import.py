"""FHIR Bundle import (Synthea-style transaction Bundles), on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.errors import ImportFailure
from store.importer import import_path
from store.records import SqliteCareRecordStore
from tests.bundle_factory import synthea_bundle, write_bundle_folder


@pytest.fixture
def store(tmp_path: Path) -> SqliteCareRecordStore:
    return SqliteCareRecordStore(tmp_path / "records.db")


def test_a_folder_of_transaction_bundles_imports_with_references_resolved(tmp_path, store) -> None:
    people = write_bundle_folder(tmp_path / "synthea", 3)
    report = import_path(store, tmp_path / "synthea")

    assert (0, 3) == (report.skipped, report.as_dict()["by_type"]["Patient"]["inserted"])
    for patient, encounter in people:
        stored = store.get("Encounter", encounter)
        assert f"Patient/{patient}" == stored["subject"]["reference"]
        assert store.get("Patient", patient) is not None
        assert [patient] == [c["beneficiary"]["reference"].split("/")[1]
                             for c in store.find_for_member("Coverage", patient)]
    assert {e for _, e in people} <= set(report.encounters)


def test_reimporting_the_same_bundles_changes_nothing(tmp_path, store) -> None:
    write_bundle_folder(tmp_path / "synthea", 2)
    first = import_path(store, tmp_path / "synthea")
    again = import_path(store, tmp_path / "synthea")
    assert first.total("inserted") == again.total("unchanged") > 0
    assert (0, 0) == (again.total("inserted"), again.total("updated"))


def test_an_invalid_entry_is_skipped_with_its_file_and_index_and_the_rest_imported(tmp_path, store) -> None:
    bundle, patient, encounter = synthea_bundle()
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Encounter")
    bundle["entry"][index]["resource"]["period"]["start"] = "yesterday"  # not a FHIR dateTime
    path = tmp_path / "one.json"
    path.write_text(json.dumps(bundle))
    report = import_path(store, path)

    [problem] = report.problems
    assert str(problem).startswith(f"{path}: entry {index + 1}: (Encounter)")
    assert "period" in str(problem)
    assert store.get("Patient", patient) is not None and store.get("Encounter", encounter) is None


def test_files_that_are_not_bundles_are_reported_by_name(tmp_path, store) -> None:
    folder = tmp_path / "mixed"
    write_bundle_folder(folder, 1)
    (folder / "broken.json").write_text('{"resourceType": "Bundle", "entry": [')
    (folder / "patient.json").write_text('{"resourceType": "Patient", "id": "p1"}')
    (folder / "message.json").write_text('{"resourceType": "Bundle", "type": "message", "entry": []}')
    report = import_path(store, folder)

    messages = sorted(str(p) for p in report.problems)
    assert 3 == len(messages)
    assert any("broken.json: not valid JSON" in m for m in messages)
    assert any("patient.json: holds a Patient, not a FHIR Bundle" in m for m in messages)
    assert any("message.json: Bundle type 'message' is not imported" in m for m in messages)
    assert 1 == report.as_dict()["by_type"]["Patient"]["inserted"]


def test_a_folder_with_nothing_to_import_names_what_it_expected(tmp_path, store) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportFailure, match=r"holds no \*\.ndjson or \*\.json files"):
        import_path(store, tmp_path / "empty")
