"""The promoted readmission-risk model in production: drift against its training split, realised outcomes.

The risk activity writes a FHIR ``RiskAssessment`` per learned score (:func:`tools.risk.risk_assessments`):
which model (``method.coding`` ``<name>/<registry version>``, ``identifier`` the model file's sha256, alias in
``method.text``), the probability, the stay, when. This module reads the ``champion`` scores made in a window
(by when they were scored) and, for the version the registry's ``champion`` alias names now:

* **drift**: each scored stay's features are recomputed at its discharge with
  :func:`learning.features.stay_features` (as the model saw them; nothing dated after the discharge), binned
  with the training split's bins from the model's manifest (``reference``, :func:`learning.model.train`) and
  compared with :func:`evaluation.monitor.psi`; the same for the scores themselves. A stay whose features
  cannot be read is counted, never imputed. Below ``min_stays`` values no PSI is given.
* **realised outcomes**: for stays whose 30-day window had closed by ``now``, the label
  (:func:`learning.features.readmitted_within_30_days`) against the recorded probability: AUC, Brier, mean
  predicted against observed rate, next to the manifest's training rate and validation AUC.

Scores made by another version under the champion alias (an earlier champion) are counted apart, never mixed
in. The figures are aggregates: no member or stay identifier leaves this module. Definitions and alert
thresholds: docs/monitoring.md and docs/metrics.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from temporalio.exceptions import ApplicationError

from evaluation.monitor import FeatureDrift, RealisedOutcomes, RiskModelFigures, VersionCount, drift_level, psi
from learning.features import READMISSION_WINDOW, MissingFeature, readmitted_within_30_days, stay_features
from learning.model import MANIFEST_FILE, MODEL_NAME, bin_counts, read_manifest, sha256_file
from learning.registry import CHAMPION, ModelRegistry
from runtime.errors import CareloomError
from tools.clinical import parse_instant
from tools.risk import RISK_MODEL_SYSTEM

if TYPE_CHECKING:
    from store.sql_records import SqlCareRecordStore

__all__ = ["MIN_STAYS", "NO_REFERENCE", "MonitoredModel", "champion_to_monitor", "model_drift",
           "risk_model_figures"]

MIN_STAYS = 100
"""Fewest values a PSI, an AUC or a calibration judgement is computed from (below it: "too few ...")."""
SIGNIFICANT = "significant"
NO_REFERENCE = "no reference distribution in this model's manifest; retrain to monitor drift"
_PAGE = 500


@dataclass(frozen=True)
class MonitoredModel:
    """The model whose scores are monitored: its registry identity and its (registered) manifest."""

    name: str
    version: str
    label: str
    digest: str
    manifest: dict[str, Any]

    @property
    def code(self) -> str:
        """The RiskAssessment ``method.coding`` code its scores carry."""
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class _Score:
    member_id: str
    encounter_id: str
    at: str
    probability: float


def champion_to_monitor(registry: ModelRegistry, name: str = MODEL_NAME) -> tuple[MonitoredModel | None, str | None]:
    """(the registry's champion with its registered manifest, None) or (None, why there is none). Never raises."""
    if not registry.exists():
        return None, (f"{registry.absence or 'no model registry'}: no risk model to monitor (register and promote "
                      "one with `careloom model register` and `careloom model promote`)")
    try:
        registered = registry.by_alias(name, CHAMPION)
    except Exception as err:  # noqa: BLE001 - the report goes on without this section
        return None, f"the model registry could not be read ({err.__class__.__name__}): no risk model to monitor"
    if registered is None:
        return None, (f"no champion of {name} in the model registry: no risk model to monitor (promote one with "
                      "`careloom model promote`)")
    where = f"{name} version {registered.version}"
    try:
        manifest = read_manifest(registered.source)
        found = sha256_file(registered.source / MANIFEST_FILE)
    except (CareloomError, OSError) as err:
        return None, f"the champion {where}'s registered manifest cannot be read ({err}); re-register the model"
    if found != registered.manifest_digest:
        return None, (f"the champion {where}'s registered manifest (sha256 {found[:16]}…) is not the one the "
                      f"registry recorded ({registered.manifest_digest[:16]}…): the copy was changed; re-register")
    return MonitoredModel(name=name, version=registered.version, label=registered.label,
                          digest=registered.digest, manifest=manifest), None


def _champion_scores(store: SqlCareRecordStore, start: str, end: str) -> Iterator[dict[str, Any]]:
    after: tuple[str, str] | None = None
    while True:
        page = store.ended_page("RiskAssessment", start, end, after=after, limit=_PAGE)
        yield from (r for r in page if (r.get("method") or {}).get("text") == CHAMPION)
        if len(page) < _PAGE:
            return
        after = (page[-1]["occurrenceDateTime"], page[-1]["id"])


def _reference_id(resource: dict[str, Any], key: str, prefix: str) -> str | None:
    ref = (resource.get(key) or {}).get("reference")
    return ref.removeprefix(prefix) if isinstance(ref, str) and ref.startswith(prefix) else None


def _parse(resource: dict[str, Any]) -> tuple[str, str, _Score] | None:
    """(method code, model digest, the score) of a champion RiskAssessment, or None when it lacks any of them."""
    coding = next((c for c in (resource.get("method") or {}).get("coding") or []
                   if c.get("system") == RISK_MODEL_SYSTEM), None)
    digest = next((i.get("value") for i in resource.get("identifier") or []
                   if i.get("system") == f"{RISK_MODEL_SYSTEM}/sha256"), None)
    prediction = (resource.get("prediction") or [{}])[0]
    probability = prediction.get("probabilityDecimal")
    member, stay = (_reference_id(resource, "subject", "Patient/"),
                    _reference_id(resource, "encounter", "Encounter/"))
    if coding is None or not coding.get("code") or not digest or not isinstance(probability, int | float) \
            or member is None or stay is None or not resource.get("occurrenceDateTime"):
        return None
    return coding["code"], digest, _Score(member, stay, resource["occurrenceDateTime"], float(probability))


def _why(err: Exception) -> str:
    """A reason without the member or the stay: the features' names, or the error's type."""
    if isinstance(err, MissingFeature):
        return "missing " + ", ".join(err.missing)
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return err.__class__.__name__


def _feature_drift(name: str, reference: dict[str, Any], values: list[float], min_stays: int) -> FeatureDrift:
    counts = bin_counts(values, reference["edges"]) if values else [0] * len(reference["shares"])
    value = round(psi(reference["shares"], counts), 4) if len(values) >= min_stays else None
    return FeatureDrift(name=name, n=len(values), reference_mean=round(float(reference["mean"]), 4),
                        mean=round(sum(values) / len(values), 4) if values else None,
                        reference_shares=[round(float(s), 4) for s in reference["shares"]], counts=counts,
                        psi=value, level=None if value is None else drift_level(value))


def _wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _outcomes(store: SqlCareRecordStore, scores: list[_Score], model: MonitoredModel, now: datetime,
              min_stays: int) -> RealisedOutcomes:
    labels: list[int] = []
    predicted: list[float] = []
    awaiting = unlabelled = 0
    for score in scores:
        encounter = store.get("Encounter", score.encounter_id) or {}
        discharged = parse_instant((encounter.get("period") or {}).get("end"))
        if discharged is None:
            unlabelled += 1
            continue
        if discharged + READMISSION_WINDOW > now:
            awaiting += 1
            continue
        try:
            labels.append(int(readmitted_within_30_days(store, score.member_id, score.encounter_id)))
        except Exception:  # noqa: BLE001 - one unreadable record is counted, never the end of the report
            unlabelled += 1
            continue
        predicted.append(score.probability)
    metrics = model.manifest.get("metrics") or {}
    validation = metrics.get("validation") or {}
    reference = model.manifest.get("reference") or {}
    n, readmissions = len(labels), sum(labels)
    observed = readmissions / n if n else None
    mean_predicted = sum(predicted) / n if n else None
    auc = brier = None
    note = None
    if n < min_stays:
        note = f"too few labelled stays ({n} < {min_stays}): AUC, Brier and calibration not judged"
    else:
        from sklearn.metrics import brier_score_loss, roc_auc_score

        brier = round(float(brier_score_loss(labels, predicted)), 4)
        if 0 < readmissions < n:
            auc = round(float(roc_auc_score(labels, predicted)), 4)
        else:
            note = "every labelled stay had the same outcome: no AUC"
    ci = validation.get("auc_ci95")
    return RealisedOutcomes(
        scored=len(scores), labelled=n, awaiting_label=awaiting, unlabelled=unlabelled, readmissions=readmissions,
        observed_rate=None if observed is None else round(observed, 4),
        observed_rate_ci95=_wilson(readmissions, n) if n else None,
        mean_predicted=None if mean_predicted is None else round(mean_predicted, 4),
        calibration_gap=None if observed is None or mean_predicted is None else round(mean_predicted - observed, 4),
        auc=auc, brier=brier,
        training_rate=reference.get("readmission_rate"), validation_auc=validation.get("auc"),
        validation_auc_ci95=list(ci) if ci else None, note=note)


def _alerts(figures: RiskModelFigures, min_stays: int) -> list[str]:
    """The thresholds of docs/metrics.md, in words (no member data)."""
    alerts = []
    if figures.score is not None and figures.score.level == SIGNIFICANT:
        alerts.append(f"score PSI {figures.score.psi:.3f} > 0.25 (significant): the scored population or the data "
                      "feed changed since training; investigate, and retrain on recent stays if it persists")
    shifted = sorted((f for f in figures.features if f.level == SIGNIFICANT), key=lambda f: -(f.psi or 0.0))
    if shifted:
        alerts.append("feature PSI > 0.25 (significant): " + ", ".join(f"{f.name} {f.psi:.3f}" for f in shifted)
                      + "; investigate the feature's source, and retrain if the population really changed")
    out = figures.outcomes
    if out is None or out.labelled < min_stays:
        return alerts
    if out.auc is not None and out.validation_auc_ci95 and out.auc < out.validation_auc_ci95[0]:
        alerts.append(f"realised AUC {out.auc:.3f} is below the validation AUC's 95 % lower bound "
                      f"{out.validation_auc_ci95[0]:.3f}: the model ranks worse than validated; review it against "
                      "LACE (`careloom model compare`) and retrain")
    if out.observed_rate_ci95 and out.mean_predicted is not None and not (
            out.observed_rate_ci95[0] <= out.mean_predicted <= out.observed_rate_ci95[1]):
        alerts.append(f"calibration: mean predicted {out.mean_predicted:.1%} lies outside the observed rate's 95 % "
                      f"interval {out.observed_rate_ci95[0]:.1%}–{out.observed_rate_ci95[1]:.1%} "
                      f"({out.readmissions}/{out.labelled}); the probabilities no longer mean what they say: "
                      "recalibrate or retrain")
    return alerts


def model_drift(store: SqlCareRecordStore, model: MonitoredModel | None, *, since: datetime, until: datetime,
                now: datetime, outcome_since: datetime | None = None, reason: str | None = None,
                min_stays: int = MIN_STAYS) -> RiskModelFigures:
    """Drift of ``model``'s champion scores made in [``since``, ``until``) against its manifest's training
    reference, and realised outcomes of its scores made in [``outcome_since`` (default ``since``), ``until``)
    whose 30-day window had closed by ``now``. With no ``model``, the section only says ``reason``."""
    if model is None:
        return RiskModelFigures(message=reason or "no risk model to monitor")
    outcome_since = outcome_since or since
    start = min(since, outcome_since).isoformat()
    latest: dict[str, _Score] = {}
    others: Counter[tuple[str, str]] = Counter()
    malformed = 0
    for resource in _champion_scores(store, start, until.isoformat()):
        parsed = _parse(resource)
        if parsed is None:
            malformed += 1
            continue
        code, digest, score = parsed
        if code != model.code or digest != model.digest:
            others[(code, digest[:16])] += 1
        elif score.encounter_id not in latest or latest[score.encounter_id].at <= score.at:
            latest[score.encounter_id] = score  # one score per stay: the latest
    scores = list(latest.values())
    drift_scores = [s for s in scores if s.at >= since.isoformat()]
    figures = RiskModelFigures(
        name=model.name, version=model.version, label=model.label, digest=model.digest, drift_since=since,
        until=until, outcome_since=outcome_since, min_stays=min_stays, scored=len(drift_scores),
        malformed=malformed,
        earlier_versions=[VersionCount(model=code, digest=digest, scored=n) for (code, digest), n in sorted(
            others.items())])
    reference = model.manifest.get("reference")
    if not reference:
        figures.drift_note = NO_REFERENCE
    else:
        _drift(store, figures, reference, drift_scores, min_stays)
    figures.outcomes = _outcomes(store, [s for s in scores if s.at >= outcome_since.isoformat()], model, now,
                                 min_stays)
    figures.alerts = _alerts(figures, min_stays)
    return figures


def _drift(store: SqlCareRecordStore, figures: RiskModelFigures, reference: dict[str, Any], scores: list[_Score],
           min_stays: int) -> None:
    """Fill ``figures``' score and feature drift from the stays' features recomputed at their discharge."""
    values: dict[str, list[float]] = {name: [] for name in reference["features"]}
    reasons: Counter[str] = Counter()
    for score in scores:
        try:
            row = stay_features(store, score.member_id, score.encounter_id)
        except Exception as err:  # noqa: BLE001 - counted by reason (never the member), the report goes on
            reasons[_why(err)] += 1
            continue
        for name, found in values.items():
            if row.get(name) is not None:
                found.append(float(row[name]))
    figures.unreadable = sum(reasons.values())
    figures.unreadable_reasons = dict(sorted(reasons.items()))
    figures.score = _feature_drift("score (readmission probability)", reference["score"],
                                   [s.probability for s in scores], min_stays)
    figures.features = [_feature_drift(name, reference["features"][name], found, min_stays)
                        for name, found in values.items()]
    readable = len(scores) - figures.unreadable
    if len(scores) < min_stays:
        figures.drift_note = f"too few scored stays ({len(scores)} < {min_stays}): no PSI"
    elif readable < min_stays:
        figures.drift_note = (f"too few stays whose features could be read ({readable} < {min_stays}): no feature "
                              "PSI")


def risk_model_figures(store: SqlCareRecordStore, registry: ModelRegistry, *, since: datetime, until: datetime,
                       now: datetime, outcome_since: datetime | None = None,
                       min_stays: int = MIN_STAYS) -> RiskModelFigures:
    """:func:`model_drift` for the registry's current champion (or the reason there is none)."""
    model, reason = champion_to_monitor(registry)
    return model_drift(store, model, since=since, until=until, now=now, outcome_since=outcome_since,
                       reason=reason, min_stays=min_stays)
