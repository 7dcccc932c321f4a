"""``score_readmission_risk``: the LACE index (van Walraven et al., CMAJ 2010;182(6):551-7).

Missing inputs give ``insufficient_data`` naming what is missing; nothing is
imputed. The score prioritises outreach; it never decides coverage.

A learned model can score beside LACE (issue 26): the worker injects a :class:`RiskModelScorer` (built from
the model registry's champion and challenger by ``learning.serving``; this module never imports ``learning``)
and :class:`RiskScore` then carries the champion's :class:`ModelScore` (``model``), the challenger's
(``shadow``, affecting nothing) or why there is none (``model_reason``, ``shadow_reason``: LACE alone). LACE is
always computed and returned; routing reads LACE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from store.records import RISK_MODEL_SYSTEM, CareRecordStore
from tools.charlson import charlson_categories, charlson_index

__all__ = ["RISK_MODEL_SYSTEM", "FeatureContribution", "LaceComponents", "ModelOutcome", "ModelScore", "RiskInput", "RiskModelScorer", "RiskScore", "lace",
           "lace_components", "record_assessments", "risk_assessments", "score_readmission_risk"]

READMISSION_OUTCOME = "30-day inpatient readmission"


def _los_points(days: int) -> int:
    if days < 1:
        return 0
    if days <= 3:
        return days
    if days <= 6:
        return 4
    if days <= 13:
        return 5
    return 7


def _cci_points(cci: int) -> int:
    return cci if cci <= 3 else 5


def _ed_points(visits: int) -> int:
    return min(visits, 4)


class LaceComponents(BaseModel):
    l: int = Field(description="Length of stay points (0-7).")
    a: int = Field(description="Acute admission points (0 or 3).")
    c: int = Field(description="Charlson points (0-5).")
    e: int = Field(description="ED visit points (0-4).")

    @property
    def total(self) -> int:
        return self.l + self.a + self.c + self.e


def lace_components(los: int, acute: bool, cci: int, ed: int) -> LaceComponents:
    return LaceComponents(l=_los_points(los), a=3 if acute else 0, c=_cci_points(cci), e=_ed_points(ed))


def lace(los: int, acute: bool, cci: int, ed: int) -> int:
    """LACE total, 0-19."""
    return lace_components(los, acute, cci, ed).total


class RiskInput(BaseModel):
    length_of_stay_days: int | None = Field(ge=0)
    acute_admission: bool | None
    condition_codes: list[str] | None = Field(description="ICD-10 codes known at discharge; None if unknown.")
    ed_visits_6mo: int | None = Field(ge=0)
    member_id: str | None = Field(default=None, description="The member, for a learned model's features (read "
                                                            "from the records store at the discharge).")
    encounter_id: str | None = Field(default=None, description="The index stay, for a learned model's features.")


class FeatureContribution(BaseModel):
    """One feature's part in a score (SHAP, on the probability scale), in words a nurse reads."""

    feature: str = Field(description="The model's input column, e.g. ed_visits_6mo.")
    value: float = Field(description="The stay's value of it.")
    contribution: float = Field(description="Its share of (score - base rate), in probability points.")
    words: str = Field(description='e.g. "3 ED visits in the 6 months before: +0.12".')


class ModelScore(BaseModel):
    """One learned model's readmission probability for the stay, and which model computed it."""

    name: str = Field(description="Registered model name.")
    version: str = Field(description="Registry version number.")
    label: str = Field(description="The artifact's own version label (its manifest).")
    digest: str = Field(description="sha256 of the model file, verified against the registry and the manifest.")
    alias: str = Field(description="The registry alias it was served under: champion or challenger.")
    probability: float = Field(ge=0.0, le=1.0, description="30-day readmission probability.")
    base_probability: float | None = Field(default=None, description=(
        "The model's base rate (its expected score over the training data), where the contributions start."))
    contributions: list[FeatureContribution] = Field(default_factory=list, description=(
        "The largest feature contributions (SHAP), largest first; the champion's only."))
    explanation_reason: str | None = Field(default=None, description="Why there is no explanation, if none.")

    def ref(self) -> str:
        """``<name>/<version> sha256:<digest>``: the model, exactly (ledger entries carry it)."""
        return f"{self.name}/{self.version} sha256:{self.digest}"

    def words(self) -> str:
        """``name vversion (sha256 abcd…): 0.23 30-day readmission``."""
        return (f"{self.name} v{self.version} (sha256 {self.digest[:12]}…): {self.probability:.2f} "
                "30-day readmission")


class ModelOutcome(BaseModel):
    """What a :class:`RiskModelScorer` returns: the champion's and the challenger's scores, or why not."""

    model: ModelScore | None = None
    shadow: ModelScore | None = None
    model_reason: str | None = None
    shadow_reason: str | None = None


class RiskModelScorer(Protocol):
    """A learned readmission-risk scorer injected by the worker. ``score`` never raises: a problem is a
    reason in the outcome, and the run keeps LACE."""

    def score(self, store: CareRecordStore, member_id: str, encounter_id: str) -> ModelOutcome: ...


class RiskScore(BaseModel):
    status: Literal["scored", "insufficient_data"]
    lace: int | None = None
    components: LaceComponents | None = None
    charlson_index: int | None = None
    charlson_categories: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list, description="Inputs that were missing (never imputed).")
    model: ModelScore | None = Field(default=None, description="The promoted (champion) learned model's score: "
                                     "prioritisation only, never a coverage decision.")
    shadow: ModelScore | None = Field(default=None, description="The challenger's score beside it (shadow mode: "
                                      "recorded, affecting nothing).")
    model_reason: str | None = Field(default=None, description="Why no learned model scored (LACE alone).")
    shadow_reason: str | None = Field(default=None, description="Why the challenger did not score.")


def score_readmission_risk(data: RiskInput) -> RiskScore:
    los, acute, codes, ed = data.length_of_stay_days, data.acute_admission, data.condition_codes, data.ed_visits_6mo
    if los is None or acute is None or codes is None or ed is None:
        named = {"length_of_stay_days": los, "acute_admission": acute, "condition_codes": codes, "ed_visits_6mo": ed}
        return RiskScore(status="insufficient_data", missing=[k for k, v in named.items() if v is None])
    cci = charlson_index(codes)
    parts = lace_components(los, acute, cci, ed)
    return RiskScore(
        status="scored",
        lace=parts.total,
        components=parts,
        charlson_index=cci,
        charlson_categories=sorted(charlson_categories(codes)),
    )


def risk_assessments(result: RiskScore, member_id: str, encounter_id: str, at: datetime) -> list[dict[str, Any]]:
    """FHIR R4 ``RiskAssessment`` records of the learned scores in ``result`` (the champion's and the shadow's):
    which model (name, version, digest, alias), the probability, when. ``careloom model compare`` pairs the
    champion's and the challenger's with the outcomes that follow; the monitoring report reads them for drift.
    One record per stay, model version and alias (:func:`record_assessments` writes each once)."""
    import hashlib

    records = []
    for score in (result.model, result.shadow):
        if score is None:
            continue
        rid = hashlib.sha256(f"{encounter_id}|{score.name}|{score.version}|{score.alias}".encode()).hexdigest()[:32]
        records.append({
            "resourceType": "RiskAssessment",
            "id": f"risk-{rid}",
            "status": "final",
            "subject": {"reference": f"Patient/{member_id}"},
            "encounter": {"reference": f"Encounter/{encounter_id}"},
            "occurrenceDateTime": at.isoformat(),
            "method": {"coding": [{"system": RISK_MODEL_SYSTEM, "code": f"{score.name}/{score.version}",
                                   "display": score.label}],
                       "text": score.alias},
            "prediction": [{"outcome": {"text": READMISSION_OUTCOME}, "probabilityDecimal": score.probability}],
            "identifier": [{"system": f"{RISK_MODEL_SYSTEM}/sha256", "value": score.digest}],
            "note": [{"text": ("champion: prioritises outreach, never a coverage decision" if score.alias == "champion"
                               else "challenger in shadow mode: recorded, affecting nothing")}],
        })
    return records


def record_assessments(store: CareRecordStore, result: RiskScore, member_id: str, encounter_id: str,
                       at: datetime) -> int:
    """Store :func:`risk_assessments`, each once: a stay scored again by the same version under the same alias (a
    retried activity, a second run for the stay) keeps its first record and time. Returns how many were new."""
    fresh = [r for r in risk_assessments(result, member_id, encounter_id, at)
             if store.get("RiskAssessment", r["id"]) is None]
    if fresh:
        store.put_many(fresh)
    return len(fresh)
