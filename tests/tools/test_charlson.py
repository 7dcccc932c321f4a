"""Tests for tools.charlson: Charlson categories (Quan 2005 ICD-10) with the original weights."""

from __future__ import annotations

import pytest

from tools.charlson import charlson_categories, charlson_index, normalize_icd10


@pytest.mark.parametrize(("code", "category"), [
    ("I21.4", "myocardial_infarction"),
    ("I25.2", "myocardial_infarction"),
    ("I50.9", "congestive_heart_failure"),
    ("I11.0", "congestive_heart_failure"),
    ("I70.0", "peripheral_vascular"),
    ("I63.9", "cerebrovascular"),
    ("G45.9", "cerebrovascular"),
    ("G30.9", "dementia"),
    ("F03.90", "dementia"),
    ("J44.9", "chronic_pulmonary"),
    ("M06.9", "rheumatic"),
    ("K25.9", "peptic_ulcer"),
    ("K70.30", "mild_liver"),
    ("E11.9", "diabetes_uncomplicated"),
    ("E11.22", "diabetes_complicated"),
    ("G81.90", "hemiplegia_paraplegia"),
    ("N18.4", "renal"),
    ("C34.90", "malignancy"),
    ("K72.10", "severe_liver"),
    ("C78.00", "metastatic_solid_tumour"),
    ("B20", "hiv_aids"),
])
def test_code_maps_to_its_category(code, category):
    """Each ICD-10-CM code maps to its Quan (2005) Charlson category."""
    assert {category} == charlson_categories([code])


@pytest.mark.parametrize(("codes", "index"), [
    (["I21.4"], 1),
    (["E11.9"], 1),
    (["E11.22"], 2),
    (["G81.90"], 2),
    (["N18.4"], 2),
    (["C34.90"], 2),
    (["K72.10"], 3),
    (["C78.00"], 6),
    (["B20"], 6),
])
def test_original_charlson_weights(codes, index):
    """Weights: mostly 1; 2 for complicated diabetes, hemiplegia, renal, cancer; 3 severe liver; 6 metastases/AIDS."""
    assert index == charlson_index(codes)


def test_unrelated_codes_score_zero():
    """Codes outside the Charlson categories (e.g. obesity, hypertension) add nothing."""
    assert (set(), 0) == (charlson_categories(["E66.9", "I10"]), charlson_index(["E66.9", "I10"]))


def test_no_codes_score_zero():
    """No codes, no comorbidity."""
    assert 0 == charlson_index([])


def test_complicated_diabetes_supersedes_uncomplicated():
    """With both diabetes codes only the complicated category counts (2, not 3)."""
    codes = ["E11.9", "E11.22"]

    assert ({"diabetes_complicated"}, 2) == (charlson_categories(codes), charlson_index(codes))


def test_metastatic_tumour_supersedes_malignancy():
    """With a primary and a metastatic tumour only the metastatic category counts (6, not 8)."""
    codes = ["C34.90", "C78.00"]

    assert ({"metastatic_solid_tumour"}, 6) == (charlson_categories(codes), charlson_index(codes))


def test_severe_liver_disease_supersedes_mild():
    """With mild and severe liver disease only the severe category counts (3, not 4)."""
    codes = ["K70.30", "K72.10"]

    assert ({"severe_liver"}, 3) == (charlson_categories(codes), charlson_index(codes))


def test_categories_add_up_across_organs():
    """Different categories add: CHF 1 + COPD 1 + renal 2 + complicated diabetes 2 = 6."""
    assert 6 == charlson_index(["I50.9", "J44.9", "N18.4", "E11.22"])


def test_repeated_category_counts_once():
    """Several codes of one category count once."""
    assert 1 == charlson_index(["I50.9", "I50.22", "I11.0"])


def test_codes_match_with_or_without_dots():
    """'E11.22' and 'E1122' (and lower case) are the same code."""
    assert charlson_categories(["E11.22"]) == charlson_categories(["E1122"]) == charlson_categories([" e11.22 "])


def test_normalize_removes_dot_and_spaces_and_uppercases():
    """normalize_icd10 compares codes without dots, upper case."""
    assert "E1122" == normalize_icd10(" e11.22 ")


def test_prefix_does_not_match_a_different_code():
    """I25.2 (old MI) counts but I25.10 (atherosclerotic heart disease) does not."""
    assert (1, 0) == (charlson_index(["I25.2"]), charlson_index(["I25.10"]))
