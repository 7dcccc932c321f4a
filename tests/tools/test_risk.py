"""Tests for tools.risk: the LACE index (van Walraven et al., CMAJ 2010) and score_readmission_risk."""

from __future__ import annotations

import pytest

from tools.risk import RiskInput, lace, lace_components, score_readmission_risk


def test_lace_reference_case_fourteen():
    """LOS 5, acute, Charlson 5, 2 ED visits scores 4 + 3 + 5 + 2 = 14."""
    assert 14 == lace(5, True, 5, 2)


def test_lace_maximum_is_nineteen():
    """LOS 14, acute, Charlson 4, 4 ED visits is the maximum, 19."""
    assert 19 == lace(14, True, 4, 4)


def test_lace_minimum_is_zero():
    """A same-day, elective stay with no comorbidity and no ED visits scores 0."""
    assert 0 == lace(0, False, 0, 0)


@pytest.mark.parametrize(("los", "points"), [
    (0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (6, 4), (7, 5), (13, 5), (14, 7), (30, 7),
])
def test_length_of_stay_points(los, points):
    """L: <1 day 0, 1-3 days as is, 4-6 days 4, 7-13 days 5, >=14 days 7."""
    assert points == lace_components(los, False, 0, 0).l


@pytest.mark.parametrize(("acute", "points"), [(True, 3), (False, 0)])
def test_acute_admission_points(acute, points):
    """A: an emergent admission scores 3, an elective one 0."""
    assert points == lace_components(0, acute, 0, 0).a


@pytest.mark.parametrize(("cci", "points"), [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (5, 5), (12, 5)])
def test_charlson_points(cci, points):
    """C: a Charlson index of 0-3 scores the same, 4 or more scores 5."""
    assert points == lace_components(0, False, cci, 0).c


@pytest.mark.parametrize(("visits", "points"), [(0, 0), (1, 1), (3, 3), (4, 4), (9, 4)])
def test_ed_visit_points_are_capped_at_four(visits, points):
    """E: ED visits in the 6 months before admission score one each, at most 4."""
    assert points == lace_components(0, False, 0, visits).e


def test_components_sum_to_the_total():
    """The components' total equals lace()."""
    parts = lace_components(8, True, 2, 1)

    assert ((5, 3, 2, 1), 11) == ((parts.l, parts.a, parts.c, parts.e), parts.total)


def test_score_from_codes_uses_charlson_index():
    """Scoring computes the Charlson index from the codes (CHF 1 + metastatic 6 = 7 → C 5)."""
    score = score_readmission_risk(RiskInput(length_of_stay_days=5, acute_admission=True,
                                             condition_codes=["I50.9", "C78.0"], ed_visits_6mo=2))

    assert ("scored", 14, 7, ["congestive_heart_failure", "metastatic_solid_tumour"]) == (
        score.status, score.lace, score.charlson_index, score.charlson_categories)


def test_no_codes_is_a_known_zero_not_missing():
    """An empty code list (known: no comorbidity) scores C 0; it is not missing data."""
    score = score_readmission_risk(RiskInput(length_of_stay_days=2, acute_admission=True,
                                             condition_codes=[], ed_visits_6mo=0))

    assert ("scored", 5, []) == (score.status, score.lace, score.missing)


@pytest.mark.parametrize("missing", ["length_of_stay_days", "acute_admission", "condition_codes", "ed_visits_6mo"])
def test_any_missing_input_gives_insufficient_data(missing):
    """A missing input is never imputed: status insufficient_data, no LACE, and the field is named."""
    values = {"length_of_stay_days": 3, "acute_admission": True, "condition_codes": ["I50.9"], "ed_visits_6mo": 1}
    values[missing] = None
    score = score_readmission_risk(RiskInput(**values))

    assert ("insufficient_data", None, None, [missing]) == (score.status, score.lace, score.components, score.missing)


def test_all_missing_inputs_are_named():
    """Every missing input is listed, in input order."""
    score = score_readmission_risk(RiskInput(length_of_stay_days=None, acute_admission=None,
                                             condition_codes=None, ed_visits_6mo=None))

    assert ["length_of_stay_days", "acute_admission", "condition_codes", "ed_visits_6mo"] == score.missing


def test_negative_length_of_stay_is_refused():
    """A negative length of stay is invalid input, not a score of 0."""
    with pytest.raises(ValueError, match="length_of_stay_days"):
        RiskInput(length_of_stay_days=-1, acute_admission=True, condition_codes=[], ed_visits_6mo=0)
