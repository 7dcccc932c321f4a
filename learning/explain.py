"""Why the model scored a stay as it did: per-feature contributions (SHAP), in words a nurse reads.

SHAP's ``TreeExplainer`` (Lundberg et al., 2020; exact for tree ensembles, here scikit-learn's
``HistGradientBoostingClassifier``) splits the model's raw output (log-odds) into one contribution per feature
plus a base value (the model's expected output over its training data). A nurse reads probabilities, so the
contributions are put on the probability scale in proportion to their log-odds values: they sum exactly to the
score minus the base rate (``sigmoid(base value)``). The largest few (by size) are kept and worded from the
stay's own values, e.g. ``3 ED visits in the 6 months before: +0.12``.

One explainer per served model, built when the worker loads the model (milliseconds); one stay's explanation
costs about 0.1-0.2 ms of CPU (measured on this machine).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from learning.features import AGE_BANDS, DISPOSITIONS, PLAN_TYPES
from tools.charlson import CHARLSON_CATEGORIES
from tools.risk import FeatureContribution

__all__ = ["TOP_CONTRIBUTIONS", "Explainer", "feature_words"]

TOP_CONTRIBUTIONS = 5
_NEGLIGIBLE = 0.005  # contributions below half a probability point are not worth a nurse's attention


def _plural(n: float, one: str, many: str | None = None) -> str:
    count = int(n)
    return f"{count} {one if count == 1 else (many or one + 's')}"


_PLAN_WORDS = {"medicare_advantage": "Medicare Advantage plan", "dual": "dual Medicare-Medicaid plan",
               "medicaid": "Medicaid plan", "commercial": "commercial plan", "other": "other plan type"}
_DISPOSITION_WORDS = {"home": ("discharged home", "not discharged home"),
                      "home_health": ("discharged home with home health", "not discharged home with home health"),
                      "snf": ("discharged to a skilled nursing facility",
                              "not discharged to a skilled nursing facility"),
                      "rehab": ("discharged to inpatient rehabilitation", "not discharged to inpatient rehabilitation"),
                      "aadvice": ("left against medical advice", "did not leave against medical advice"),
                      "other": ("discharged to another setting", "not discharged to another setting")}

_WORDS: dict[str, Callable[[float], str]] = {
    "lace_l": lambda v: f"LACE length-of-stay points {int(v)}",
    "lace_a": lambda v: "LACE acuity points 3 (emergent admission)" if v else "LACE acuity points 0 (elective)",
    "lace_c": lambda v: f"LACE comorbidity points {int(v)}",
    "lace_e": lambda v: f"LACE ED-visit points {int(v)}",
    "lace_total": lambda v: f"LACE score {int(v)}",
    "length_of_stay_days": lambda v: f"stay of {_plural(v, 'day')}",
    "acute_admission": lambda v: "emergent (acute) admission" if v else "elective admission",
    "ed_visits_6mo": lambda v: f"{_plural(v, 'ED visit')} in the 6 months before",
    "prior_inpatient_12mo": lambda v: f"{_plural(v, 'inpatient stay')} in the 12 months before",
    "charlson_index": lambda v: f"Charlson comorbidity index {int(v)}",
    "age_years": lambda v: f"age {int(v)}",
    "age_band": lambda v: f"age band {AGE_BANDS[int(v)] if 0 <= int(v) < len(AGE_BANDS) else int(v)}",
    "sex_female": lambda v: "female" if v else "male",
}
for _category in CHARLSON_CATEGORIES:
    _WORDS[f"charlson_{_category}"] = (
        lambda v, c=_category.replace("_", " "): f"{c} {'on record' if v else 'not on record'}")
for _plan in PLAN_TYPES:
    _WORDS[f"plan_{_plan}"] = lambda v, p=_PLAN_WORDS[_plan]: p if v else f"not a {p}"
for _disposition in DISPOSITIONS:
    _WORDS[f"disposition_{_disposition}"] = lambda v, d=_DISPOSITION_WORDS[_disposition]: d[0] if v else d[1]


def feature_words(feature: str, value: float) -> str:
    """The stay's value of ``feature`` in words (``3 ED visits in the 6 months before``)."""
    words = _WORDS.get(feature)
    return words(value) if words is not None else f"{feature.replace('_', ' ')} {value:g}"


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class Explainer:
    """SHAP contributions of one fitted tree model, worded."""

    def __init__(self, estimator: Any, features: Sequence[str]) -> None:  # noqa: ANN401 - a fitted estimator
        import shap

        self._explainer = shap.TreeExplainer(estimator)
        self.features = list(features)
        base = self._explainer.expected_value
        self.base_value = float(base[0] if hasattr(base, "__len__") else base)
        self.base_probability = _sigmoid(self.base_value)

    def contributions(self, values: Mapping[str, Any], probability: float, *,
                      top: int = TOP_CONTRIBUTIONS) -> list[FeatureContribution]:
        """The ``top`` largest contributions to ``probability`` for the stay whose features are ``values``."""
        import numpy as np

        row = np.asarray([[float(values[f]) for f in self.features]])
        shap_values = np.asarray(self._explainer.shap_values(row)).reshape(-1)
        total = float(shap_values.sum())
        gap = probability - self.base_probability
        if abs(total) > 1e-9:
            scaled = shap_values * (gap / total)
        else:  # the log-odds contributions cancel: the local slope of the sigmoid instead
            scaled = shap_values * probability * (1.0 - probability)
        order = sorted(range(len(self.features)), key=lambda i: -abs(scaled[i]))
        out = []
        for i in order[:top]:
            if abs(scaled[i]) < _NEGLIGIBLE:
                break
            feature, value, part = self.features[i], float(row[0, i]), round(float(scaled[i]), 4)
            out.append(FeatureContribution(feature=feature, value=value, contribution=part,
                                           words=f"{feature_words(feature, value)}: {part:+.2f}"))
        return out
