"""Tests for store.importer: FHIR Bulk Data NDJSON import that reports and skips bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.errors import ImportFailure
from store.importer import import_ndjson
from tests.databases import fresh_store

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "fhir_r4"


def _patient(pid: str, **extra) -> str:
    return json.dumps({"resourceType": "Patient", "id": pid, "gender": "female", **extra})


def _messy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    lines = [
        _patient("p1"),                                                              # 1 valid
        '{"resourceType": "Patient", "id": "p2",',                                  # 2 malformed JSON
        json.dumps({"resourceType": "Coverage", "id": "c1", "status": "active"}),   # 3 wrong type for file
        _patient("p3", birthDate="not-a-date"),                                      # 4 invalid R4B
        "",                                                                          # 5 blank
        _patient("p4"),                                                              # 6 valid
        json.dumps({"resourceType": "Patient", "gender": "male"}),                  # 7 no id
    ]
    (folder / "Patient.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_valid_lines_are_imported_around_bad_ones(store, tmp_path):
    """Every valid line is imported even when other lines are bad."""
    report = import_ndjson(store, _messy_folder(tmp_path))

    assert ({("Patient", "inserted"): 2}, ["p1", "p4"]) == (
        dict(report.counts), [pid for pid in ("p1", "p2", "p3", "p4") if store.get("Patient", pid)])


def test_each_bad_line_is_reported_as_file_and_line_number(store, tmp_path):
    """Bad lines are reported as ``file:line: message``, numbered as in the file (blank lines included)."""
    folder = _messy_folder(tmp_path)
    path = folder / "Patient.ndjson"
    report = import_ndjson(store, folder)

    assert [f"{path}:2", f"{path}:3", f"{path}:4", f"{path}:7"] == [str(p).split(": ", 1)[0] for p in report.problems]


@pytest.mark.parametrize(("line", "message_start"), [
    (2, "not valid JSON"),
    (3, "resourceType 'Coverage' does not match the file (Patient.ndjson)"),
    (4, "Patient is not valid FHIR R4: birthDate"),
    (7, "the resource has no id"),
])
def test_bad_line_message_says_what_is_wrong(store, tmp_path, line, message_start):
    """Each skipped line's message names its problem: bad JSON, wrong type for the file, invalid R4B, no id."""
    messages = {p.line: p.message for p in import_ndjson(store, _messy_folder(tmp_path)).problems}

    assert message_start == messages[line][: len(message_start)]


def test_blank_lines_are_neither_imported_nor_reported(store, tmp_path):
    """A blank line is skipped silently: 4 problems for 4 bad lines, none for the blank one."""
    report = import_ndjson(store, _messy_folder(tmp_path))

    assert (4, 4) == (report.skipped, report.as_dict()["skipped"])


def test_report_as_dict_summarises_by_type(store, tmp_path):
    """as_dict gives files, per-type outcomes and totals."""
    folder = _messy_folder(tmp_path)
    summary = import_ndjson(store, folder).as_dict()

    assert ([str(folder / "Patient.ndjson")], {"Patient": {"inserted": 2}}, 2, 0, 0) == (
        summary["files"], summary["by_type"], summary["inserted"], summary["updated"], summary["unchanged"])


def test_importing_twice_changes_nothing(store, tmp_path):
    """The second import of the same data reports everything unchanged and the row counts stay equal."""
    folder = _messy_folder(tmp_path)
    import_ndjson(store, folder)
    before = store.count()
    again = import_ndjson(store, folder)

    assert ({("Patient", "unchanged"): 2}, before, 2) == (dict(again.counts), store.count(), before)


def test_changed_line_is_updated_on_reimport(store, tmp_path):
    """A resource whose content changed between imports is reported updated."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Patient.ndjson").write_text(_patient("p1") + "\n", encoding="utf-8")
    import_ndjson(store, folder)
    (folder / "Patient.ndjson").write_text(_patient("p1", birthDate="1950-05-05") + "\n", encoding="utf-8")

    assert ({("Patient", "updated"): 1}, "1950-05-05") == (
        dict(import_ndjson(store, folder).counts), store.get("Patient", "p1")["birthDate"])


def test_single_file_can_be_imported(store, tmp_path):
    """A path to one NDJSON file imports that file."""
    folder = _messy_folder(tmp_path)

    assert 2 == import_ndjson(store, folder / "Patient.ndjson").total("inserted")


def test_split_bulk_file_takes_its_type_from_the_first_name_part(store, tmp_path):
    """Patient.001.ndjson holds Patient resources (Bulk Data split files)."""
    (tmp_path / "Patient.001.ndjson").write_text(_patient("p1") + "\n", encoding="utf-8")

    report = import_ndjson(store, tmp_path)

    assert ({("Patient", "inserted"): 1}, []) == (dict(report.counts), report.problems)


def test_missing_folder_is_an_import_failure_naming_the_path(store, tmp_path):
    """A source that does not exist fails the whole import, naming the path."""
    missing = tmp_path / "nowhere"

    with pytest.raises(ImportFailure, match=f"{missing} does not exist"):
        import_ndjson(store, missing)


def test_empty_folder_is_an_import_failure_naming_the_path(store, tmp_path):
    """A folder without *.ndjson files fails the whole import, naming the path."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not bulk data", encoding="utf-8")

    with pytest.raises(ImportFailure, match=f"{empty} holds no \\*.ndjson files"):
        import_ndjson(store, empty)


# --- real clinosim data ------------------------------------------------------

@pytest.fixture(scope="module")
def sample_import(tmp_path_factory):
    with fresh_store(tmp_path_factory.mktemp("sample"), "r.db") as records:
        yield records, import_ndjson(records, SAMPLE)


def test_clinosim_sample_imports_without_skipping(sample_import):
    """The clinosim sample imports every line: 0 skipped."""
    _, report = sample_import

    assert (0, []) == (report.skipped, report.problems)


def test_clinosim_sample_counts(sample_import):
    """The clinosim sample holds 168 Patients and Coverages, 1087 Encounters, 603 Conditions, 21 Organizations."""
    store, report = sample_import

    expected = {"Patient": 168, "Coverage": 168, "Encounter": 1087, "Condition": 603, "Organization": 21}
    assert (expected, expected) == (
        {rtype: outcomes["inserted"] for rtype, outcomes in report.as_dict()["by_type"].items()},
        {rtype: store.count(rtype) for rtype in expected})


def test_clinosim_sample_reimport_is_all_unchanged(sample_import):
    """Re-importing the clinosim sample leaves all 2,047 resources unchanged."""
    store, _ = sample_import
    again = import_ndjson(store, SAMPLE)

    assert (2047, 0, 0, 2047) == (again.total("unchanged"), again.total("inserted"), again.total("updated"),
                                  store.count())


def test_the_same_id_with_other_content_in_one_ndjson_import_is_refused_naming_both_lines(store, tmp_path):
    """A later line that reuses an id for different content is skipped and named with the line it conflicts
    with (before: it silently replaced the first); an identical repeat is no conflict."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "Patient.001.ndjson").write_text(_patient("p1", birthDate="1950-01-01") + "\n" + _patient("p2") + "\n")
    (folder / "Patient.002.ndjson").write_text(_patient("p2") + "\n" + _patient("p1", birthDate="1990-05-05") + "\n")
    report = import_ndjson(store, folder)

    [problem] = report.problems
    assert (f"{folder / 'Patient.002.ndjson'}:2: Patient/p1 conflicts with {folder / 'Patient.001.ndjson'}:1: "
            "the same id with different content in one import") == str(problem)[:len(str(problem).split(";")[0])]
    assert ("1950-01-01", 1) == (store.get("Patient", "p1")["birthDate"], report.conflicts)
    assert {"inserted": 2, "unchanged": 1} == report.as_dict()["by_type"]["Patient"]


def test_careloom_model_scores_are_never_imported(store, tmp_path):
    """A RiskAssessment claiming careloom's model system (what `model compare` and drift monitoring read) is
    refused by name, as an NDJSON line and as a Bundle entry; another organisation's RiskAssessment imports."""
    from store.importer import import_bundles
    from store.records import RISK_MODEL_SYSTEM

    def assessment(rid: str, system: str) -> dict:
        return {"resourceType": "RiskAssessment", "id": rid, "status": "final",
                "subject": {"reference": "Patient/p-risk"},
                "method": {"coding": [{"system": system, "code": "readmission-30d-hgb/1"}]},
                "prediction": [{"probabilityDecimal": 0.9}]}

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "RiskAssessment.ndjson").write_text(
        json.dumps(assessment("forged", RISK_MODEL_SYSTEM)) + "\n"
        + json.dumps(assessment("theirs", "http://example.org/their-model")) + "\n", encoding="utf-8")
    report = import_ndjson(store, folder)
    assert dict(report.counts) == {("RiskAssessment", "inserted"): 1}
    [problem] = report.problems
    assert problem.line == 1 and "careloom's own learned score" in problem.message
    assert store.get("RiskAssessment", "forged") is None and store.get("RiskAssessment", "theirs") is not None

    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": assessment("forged-2", RISK_MODEL_SYSTEM),
         "request": {"method": "PUT", "url": "RiskAssessment/forged-2"}}]}), encoding="utf-8")
    bundled = import_bundles(store, bundle)
    assert store.get("RiskAssessment", "forged-2") is None
    assert any("careloom's own learned score" in p.message for p in bundled.problems)
