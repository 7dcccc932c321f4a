"""Tests for tools.criteria: the shipped medical policy loads, and a bad criteria file names the fix."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from tools.criteria import (
    DEFAULT_CRITERIA_PATH,
    CriteriaFileError,
    Criterion,
    criteria_version_id,
    load_criteria,
)


def _shipped() -> dict:
    return json.loads(DEFAULT_CRITERIA_PATH.read_text(encoding="utf-8"))


def _write(tmp_path, data) -> object:
    path = tmp_path / "criteria.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _refusal(path) -> str:
    with pytest.raises(CriteriaFileError) as err:
        load_criteria(path)
    return str(err.value)


def test_shipped_policy_covers_the_three_services():
    """The shipped file is version 2026.1 with lumbar MRI, home health and SNF admission policies."""
    criteria = load_criteria()

    assert ("2026.1", ["lumbar-spine-mri", "home-health", "snf-admission"],
            ["advanced-imaging", "home-health", "skilled-nursing-facility"]) == (
        criteria.version, [p.policy_id for p in criteria.services], [p.category for p in criteria.services])


def test_policy_for_finds_the_policy_of_a_code():
    """Each code maps to its one policy; a code no policy covers maps to None."""
    criteria = load_criteria()

    assert ("lumbar-spine-mri", "home-health", "snf-admission", None) == (
        criteria.policy_for("72149").policy_id, criteria.policy_for("G0300").policy_id,
        criteria.policy_for("0022").policy_id, criteria.policy_for("99213"))


def test_shipped_mri_policy_lists_its_cpt_codes():
    """Lumbar MRI covers CPT 72148, 72149 and 72158 and may be approved automatically when met."""
    policy = load_criteria().policy_for("72148")

    assert (["72148", "72149", "72158"], True) == (policy.codes, policy.auto_approve_when_met)


def test_snf_admissions_always_get_a_reviewer():
    """The SNF policy is never approved automatically, even when every criterion is met."""
    assert False is load_criteria().policy_for("0022").auto_approve_when_met


def test_version_id_names_version_and_content_hash():
    """The version id is um-medical-policy@<version>+sha256:<12 hex>."""
    assert re.fullmatch(r"um-medical-policy@2026\.1\+sha256:[0-9a-f]{12}", criteria_version_id(load_criteria()))


def test_version_id_ignores_formatting(tmp_path):
    """Re-indenting the file does not change the version id: it hashes the canonical JSON."""
    reformatted = load_criteria(_write(tmp_path, json.dumps(_shipped(), indent=8)))

    assert criteria_version_id(load_criteria()) == criteria_version_id(reformatted)


def test_version_id_changes_with_any_criterion(tmp_path):
    """Editing one evidence phrase gives a different version id."""
    data = _shipped()
    data["services"][0]["criteria"][0]["evidence_terms"].append("twelve weeks of physical therapy")

    assert criteria_version_id(load_criteria()) != criteria_version_id(load_criteria(_write(tmp_path, data)))


def test_min_citations_defaults_to_one():
    """A criterion without min_citations needs one citation."""
    assert 1 == Criterion(criterion_id="x", description="xyz", evidence_terms=["abc"]).min_citations


def test_criteria_are_immutable():
    """A loaded criteria set cannot be changed in place (frozen models)."""
    criteria = load_criteria()

    with pytest.raises(ValidationError):
        criteria.version = "2027.1"


def test_unknown_field_names_file_path_and_allowed_fields(tmp_path):
    """An unknown field is reported with the file, its path, 'remove it' and the allowed fields."""
    data = _shipped()
    data["services"][1]["criteria"][0]["foo"] = 1
    path = _write(tmp_path, data)

    assert (f"{path}: 1 problem(s): unknown field `foo` at services[1].criteria[0]: remove it; allowed fields are"
            " criterion_id, description, evidence_terms, min_citations") == _refusal(path)


def test_missing_field_is_named_with_its_place(tmp_path):
    """A missing required field is reported as missing at its path, with 'add it'."""
    data = _shipped()
    del data["services"][2]["auto_approve_when_met"]
    path = _write(tmp_path, data)

    assert f"{path}: 1 problem(s): missing field `auto_approve_when_met` at services[2]: add it" == _refusal(path)


def test_every_problem_is_reported_at_once(tmp_path):
    """Several problems in one file are all reported, so one edit can fix them."""
    data = _shipped()
    data["effective"] = "soon"
    data["services"][0]["category"] = "dental"
    message = _refusal(_write(tmp_path, data))

    assert (True, True, True) == ("2 problem(s)" in message, "effective:" in message,
                                  "services[0].category:" in message)


def test_duplicate_policy_id_is_refused(tmp_path):
    """Two policies with one id are refused, naming both places and the fix."""
    data = _shipped()
    data["services"][1]["policy_id"] = "lumbar-spine-mri"
    path = _write(tmp_path, data)

    assert (f"{path}: 1 problem(s): (top level): policy_id 'lumbar-spine-mri' is used by services[0] and"
            " services[1]: give each policy its own id") == _refusal(path)


def test_duplicate_criterion_id_within_a_policy_is_refused(tmp_path):
    """Two criteria of one policy with one id are refused."""
    data = _shipped()
    data["services"][2]["criteria"][1]["criterion_id"] = "qualifying-inpatient-stay"
    path = _write(tmp_path, data)

    assert (f"{path}: 1 problem(s): services[2]: criterion_id 'qualifying-inpatient-stay' is used by criteria[0]"
            " and criteria[1]: give each criterion its own id") == _refusal(path)


def test_code_in_two_policies_is_refused(tmp_path):
    """A code listed by two policies is refused: which criteria apply would be ambiguous."""
    data = _shipped()
    data["services"][2]["codes"].append("72148")
    path = _write(tmp_path, data)

    assert (f"{path}: 1 problem(s): (top level): code '72148' is in services[0] and services[2]: a code belongs"
            " to exactly one policy, remove it from one of them") == _refusal(path)


def test_empty_evidence_phrase_is_refused(tmp_path):
    """A blank evidence phrase is refused with the fix."""
    data = _shipped()
    data["services"][0]["criteria"][0]["evidence_terms"].append("  ")

    assert "evidence_terms holds an empty phrase: remove it or write the phrase" in _refusal(_write(tmp_path, data))


def test_a_phrase_without_a_word_is_refused(tmp_path):
    """A phrase of punctuation only ("-") would match nothing as words: the file is refused, naming it."""
    data = _shipped()
    data["services"][0]["criteria"][0]["evidence_terms"].append("-")

    assert ("evidence_terms holds '-', which has no letter or digit: write the phrase's words"
            in _refusal(_write(tmp_path, data)))


def test_not_json_names_line_and_column(tmp_path):
    """A syntax error names the file, line and column and says to fix the syntax."""
    path = _write(tmp_path, '{\n  "version": "2026.1",\n}')

    assert (f"{path}: not valid JSON (Expecting property name enclosed in double quotes at line 3 column 1):"
            " fix the syntax") == _refusal(path)


def test_missing_file_says_what_to_pass(tmp_path):
    """A missing file is named, with the alternative of the shipped policy."""
    path = tmp_path / "nope.json"

    assert (f"{path} does not exist: pass the path of a criteria JSON file, or none for the shipped"
            " um-medical-policy-2026.1.json") == _refusal(path)
