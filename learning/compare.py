"""Champion vs challenger on the scores recorded in production and the outcomes that followed (issue 26).

The risk activity writes a FHIR ``RiskAssessment`` per learned score (:func:`tools.risk.risk_assessments`): the
model (``method.coding[0].code`` ``<name>/<version>``), the alias it was served under (``method.text``), the
model file's sha256 (``identifier[0]``), the probability and when. :func:`compare_recorded` reads those made in
``[since, until)`` (the records store indexes a RiskAssessment by its ``occurrenceDateTime``), pairs the
champion's and the challenger's on the same Encounter (one comparison per recorded (champion version,
challenger version) pair) and attaches the realised 30-day readmission label
(:func:`learning.features.readmitted_within_30_days`, read from the store at comparison time: readmissions
recorded after the score count) to every stay whose 30-day window has closed by ``now``. Stays still inside
their window are counted as pending, never labelled early.

Per model: stays scored, stays with an outcome, readmissions, AUC (when both outcome classes occur), Brier
score and mean score; LACE's AUC on the same labelled stays (its total from
:func:`learning.features.stay_features`). Nothing here names a member or a stay: the figures are counts and
scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from learning.features import READMISSION_WINDOW, MissingFeature, readmitted_within_30_days, stay_features
from learning.registry import CHALLENGER, CHAMPION
from runtime.errors import CareloomError
from store.sql_records import SqlCareRecordStore
from tools.clinical import parse_instant
from tools.risk import RISK_MODEL_SYSTEM

__all__ = ["NO_SHADOW_SCORES", "CompareError", "ModelFigures", "PairComparison", "RecordedComparison",
           "RecordedScore", "compare_recorded", "default_window", "recorded_scores"]

NO_SHADOW_SCORES = ("promote a challenger with `careloom model promote V --shadow` and let runs score (each run's "
                    "risk step records the champion's and the challenger's scores)")
_PAGE = 500


@dataclass(frozen=True)
class RecordedScore:
    """One RiskAssessment of a learned model, as the risk activity wrote it."""

    member_id: str
    encounter_id: str
    name: str
    version: str
    alias: str
    digest: str
    probability: float
    at: str


@dataclass
class ModelFigures:
    """One model's (or LACE's) figures on the compared stays."""

    role: str
    version: str | None
    digest: str | None
    stays_scored: int
    stays_with_outcome: int
    readmissions: int
    auc: float | None
    brier: float | None
    mean_score: float | None


@dataclass
class PairComparison:
    """The champion version and the challenger version that scored the same stays."""

    champion_version: str
    challenger_version: str
    stays: int
    pending: int
    no_outcome: int
    models: list[ModelFigures] = field(default_factory=list)
    auc_difference: float | None = None  # challenger − champion, on the same labelled stays
    lace_unscored: int = 0


@dataclass
class RecordedComparison:
    name: str
    since: str
    until: str
    now: str
    scores_read: int
    unpaired: dict[str, int]
    comparisons: list[PairComparison]
    message: str | None = None
    not_from_registry: int = 0  # records whose model digest is not the registry's for their version: left out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CompareError(CareloomError):
    """The comparison cannot be made as asked (a window that ends before it starts)."""


def _parse(resource: dict[str, Any]) -> RecordedScore | None:
    """The learned score a RiskAssessment records, or None when it is not one (another method, no probability)."""
    method = resource.get("method") or {}
    coding = (method.get("coding") or [{}])[0]
    if coding.get("system") != RISK_MODEL_SYSTEM or "/" not in str(coding.get("code", "")):
        return None
    name, _, version = str(coding["code"]).rpartition("/")
    prediction = (resource.get("prediction") or [{}])[0]
    probability = prediction.get("probabilityDecimal")
    member = str((resource.get("subject") or {}).get("reference", "")).rpartition("/")[2]
    encounter = str((resource.get("encounter") or {}).get("reference", "")).rpartition("/")[2]
    if probability is None or not member or not encounter:
        return None
    digest = str(((resource.get("identifier") or [{}])[0]).get("value", ""))
    return RecordedScore(member_id=member, encounter_id=encounter, name=name, version=version,
                         alias=str(method.get("text", "")), digest=digest, probability=float(probability),
                         at=str(resource.get("occurrenceDateTime", "")))


def recorded_scores(store: SqlCareRecordStore, name: str, since: datetime, until: datetime) -> Iterator[RecordedScore]:
    """The learned scores of model ``name`` recorded in ``[since, until)``, oldest first, read a page at a time."""
    start, end = since.isoformat(), until.isoformat()
    after: tuple[str, str] | None = None
    while True:
        page = store.ended_page("RiskAssessment", start, end, after=after, limit=_PAGE)
        for resource in page:
            score = _parse(resource)
            if score is not None and score.name == name:
                yield score
        if len(page) < _PAGE:
            return
        last = page[-1]
        after = (str(last.get("occurrenceDateTime")), str(last["id"]))


@dataclass
class _Stay:
    member_id: str
    encounter_id: str
    champion: RecordedScore
    challenger: RecordedScore


def _pairs(scores: list[RecordedScore]) -> tuple[dict[tuple[str, str], list[_Stay]], dict[str, int]]:
    """The stays scored by both a champion and a challenger, per (champion version, challenger version); and how
    many stays had a score of one alias only."""
    by_stay: dict[str, dict[str, dict[str, RecordedScore]]] = {}
    for score in scores:
        if score.alias in (CHAMPION, CHALLENGER):
            by_stay.setdefault(score.encounter_id, {CHAMPION: {}, CHALLENGER: {}})[score.alias][score.version] = score
    pairs: dict[tuple[str, str], list[_Stay]] = {}
    unpaired = {"champion_only": 0, "challenger_only": 0}
    for encounter_id, aliases in by_stay.items():
        champions, challengers = aliases[CHAMPION], aliases[CHALLENGER]
        if not champions or not challengers:
            unpaired["champion_only" if champions else "challenger_only"] += 1
            continue
        for c_version, champion in champions.items():
            for s_version, challenger in challengers.items():
                if c_version != s_version:
                    pairs.setdefault((c_version, s_version), []).append(
                        _Stay(champion.member_id, encounter_id, champion, challenger))
    return pairs, unpaired


def _label(store: SqlCareRecordStore, stay: _Stay, now: datetime) -> bool | None | str:
    """The realised label; ``"pending"`` while the 30-day window is open at ``now``; None when it cannot be read
    (the stay is not in the records, or has no discharge)."""
    encounter = store.get("Encounter", stay.encounter_id) or {}
    discharged = parse_instant((encounter.get("period") or {}).get("end"))
    if discharged is None:
        return None
    if discharged + READMISSION_WINDOW > now:
        return "pending"
    try:
        return readmitted_within_30_days(store, stay.member_id, stay.encounter_id)
    except MissingFeature:
        return None


def _figures(role: str, version: str | None, digest: str | None, all_scores: list[float],
             scores: list[float], labels: list[int]) -> ModelFigures:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    both = 0 < sum(labels) < len(labels)
    probabilities = role != "LACE"
    return ModelFigures(
        role=role, version=version, digest=digest, stays_scored=len(all_scores), stays_with_outcome=len(labels),
        readmissions=sum(labels),
        auc=round(float(roc_auc_score(labels, scores)), 4) if both else None,
        brier=round(float(brier_score_loss(labels, scores)), 4) if probabilities and labels else None,
        mean_score=round(sum(all_scores) / len(all_scores), 4) if all_scores else None)


def _lace(store: SqlCareRecordStore, stay: _Stay) -> int | None:
    try:
        return int(stay_features(store, stay.member_id, stay.encounter_id)["lace_total"])
    except Exception:  # noqa: BLE001 - a stay whose LACE cannot be rebuilt is left out of LACE's figures only
        return None


def _compare_pair(store: SqlCareRecordStore, versions: tuple[str, str], stays: list[_Stay],
                  now: datetime) -> PairComparison:
    labelled: list[tuple[_Stay, int]] = []
    pending = no_outcome = 0
    for stay in stays:
        label = _label(store, stay, now)
        if label == "pending":
            pending += 1
        elif label is None:
            no_outcome += 1
        else:
            labelled.append((stay, int(bool(label))))
    labels = [y for _, y in labelled]
    champion = _figures(CHAMPION, versions[0], stays[0].champion.digest, [s.champion.probability for s in stays],
                        [s.champion.probability for s, _ in labelled], labels)
    challenger = _figures(CHALLENGER, versions[1], stays[0].challenger.digest,
                          [s.challenger.probability for s in stays], [s.challenger.probability for s, _ in labelled],
                          labels)
    lace = [(value, y) for value, y in ((_lace(store, s), y) for s, y in labelled) if value is not None]
    lace_figures = _figures("LACE", None, None, [float(v) for v, _ in lace], [float(v) for v, _ in lace],
                            [y for _, y in lace])
    difference = (round(challenger.auc - champion.auc, 4)
                  if challenger.auc is not None and champion.auc is not None else None)
    return PairComparison(champion_version=versions[0], challenger_version=versions[1], stays=len(stays),
                          pending=pending, no_outcome=no_outcome, models=[champion, challenger, lace_figures],
                          auc_difference=difference, lace_unscored=len(labelled) - len(lace))


def compare_recorded(store: SqlCareRecordStore, name: str, since: datetime, until: datetime,
                     now: datetime, *, digests: dict[str, str] | None = None) -> RecordedComparison:
    """The champion's and the challenger's recorded scores of ``name`` made in ``[since, until)``, paired per stay
    and per (champion version, challenger version), with the outcomes known at ``now`` (all times aware).

    ``digests`` (registry version → model sha256): a record whose digest is not its version's (an imported or
    hand-made RiskAssessment claiming careloom's model system) is left out and counted."""
    for label, value in (("since", since), ("until", until), ("now", now)):
        if value.tzinfo is None:
            raise CompareError(f"{label} {value.isoformat()} has no time zone: give an aware time (UTC)")
    if until <= since:
        raise CompareError(f"the window ends ({until.isoformat()}) before it starts ({since.isoformat()}): "
                           "give --since earlier than --until")
    scores = list(recorded_scores(store, name, since, until))
    foreign = 0
    if digests is not None:
        kept = [s for s in scores if digests.get(s.version) == s.digest]
        foreign, scores = len(scores) - len(kept), kept
    pairs, unpaired = _pairs(scores)
    comparisons = [_compare_pair(store, versions, stays, now) for versions, stays in sorted(pairs.items())]
    message = None
    if not comparisons:
        found = (f"{len(scores)} score(s) of {name} recorded, none of a challenger beside the champion on the "
                 "same stay" if scores else f"no scores of {name} recorded")
        if foreign:
            found += f" ({foreign} record(s) left out: their model digest is not the registry's for their version)"
        message = f"{found} between {since.isoformat()} and {until.isoformat()}: {NO_SHADOW_SCORES}"
    return RecordedComparison(name=name, since=since.isoformat(), until=until.isoformat(), now=now.isoformat(),
                              scores_read=len(scores), unpaired=unpaired, comparisons=comparisons, message=message,
                              not_from_registry=foreign)


def default_window(now: datetime, days: int = 365) -> tuple[datetime, datetime]:
    """The default comparison window: the year before ``now``."""
    return now - timedelta(days=days), now
