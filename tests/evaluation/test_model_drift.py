"""The promoted risk model in the monitoring report: PSI per feature and for the score against the training split,
realised outcomes once the 30-day windows close, and what the section says when there is nothing to monitor.

Real parts throughout: simulated members (learning/simulate.py) in real SQLite records stores, a model trained,
validated, registered and promoted in a real MLflow registry, its real scores written as the RiskAssessments
the risk activity writes (tools.risk.risk_assessments), the command run as a process.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from evaluation.model_drift import (NO_REFERENCE, MonitoredModel, champion_to_monitor, model_drift,
                                    risk_model_figures)
from evaluation.monitor import monitor_report, render_html
from learning.dataset import build_dataset, generate, load_dataset, locate
from learning.features import FEATURES, stay_features
from learning.model import MANIFEST_FILE, read_manifest, split, train, write_manifest
from learning.registry import CHAMPION, GateResult, ModelRegistry
from learning.validation import validate
from store.sql_records import SqlCareRecordStore
from tests.cli import careloom, clean_env
from tools.clinical import parse_instant
from tools.risk import ModelScore, RiskScore, risk_assessments

TRAIN_MEMBERS, PRODUCTION_MEMBERS, SEED = 2000, 1000, 7
SINCE, UNTIL = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC)
LATER = datetime(2026, 1, 1, tzinfo=UTC)  # every simulated stay's 30-day window has closed
MODEL = "readmission-30d-hgb"


def _pass(_: object) -> GateResult:
    return GateResult(True, "test gate: passed")


def _champion(state: Path, artifact: Path) -> ModelRegistry:
    registry = ModelRegistry(state)
    version = registry.register(artifact)
    registry.promote(version.name, version.version, gate=_pass)
    return registry


@dataclass(frozen=True)
class Stay:
    member_id: str
    encounter_id: str
    discharged: datetime
    features: dict[str, object]


def _stays(store: SqlCareRecordStore, cohort: Path) -> list[Stay]:
    with cohort.open() as handle:
        rows = [(r["member_id"], r["encounter_id"], r["discharged_at"]) for r in csv.DictReader(handle)]
    return [Stay(m, e, parse_instant(d), stay_features(store, m, e)) for m, e, d in rows]  # type: ignore[arg-type]


def _score(store: SqlCareRecordStore, registry: ModelRegistry, stays: list[Stay], at: datetime | None = None,
           distort: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """The champion's real scores of ``stays`` on record, as the risk activity writes them: scored an hour after
    each discharge (or at ``at``, a minute apart); ``distort`` stands for a model that went wrong."""
    registered = registry.by_alias(MODEL, CHAMPION)
    assert registered is not None
    model = registry.verify(registered)
    import pandas as pd

    probabilities = model.score_frame(pd.DataFrame([s.features for s in stays]))
    if distort is not None:
        probabilities = distort(probabilities)
    records = []
    for i, (stay, p) in enumerate(zip(stays, probabilities, strict=True)):
        score = ModelScore(name=registered.name, version=registered.version, label=registered.label,
                           digest=registered.digest, alias=CHAMPION, probability=round(float(p), 6))
        when = stay.discharged + timedelta(hours=1) if at is None else at + timedelta(minutes=i)
        records += risk_assessments(RiskScore(status="scored", model=score), stay.member_id, stay.encounter_id, when)
    store.put_many(records)


@dataclass(frozen=True)
class World:
    artifact: Path
    data: Path
    state: Path
    store: SqlCareRecordStore
    stays: list[Stay]
    model: MonitoredModel


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("model-drift")
    data = root / "train"
    generate(locate(data), TRAIN_MEMBERS, SEED)
    build_dataset(locate(data))
    artifact = root / "model"
    train(data, artifact, seed=SEED, version="drift-1")
    validate(artifact, data)  # the validation AUC and its interval, in the manifest
    production = locate(root / "production")
    generate(production, PRODUCTION_MEMBERS, SEED + 4)  # other members, the same population
    store = SqlCareRecordStore(production.records)
    stays = _stays(store, production.cohort)
    registry = _champion(root / "state", artifact)
    _score(store, registry, stays)
    model, reason = champion_to_monitor(registry)
    assert model is not None and reason is None
    yield World(artifact, data, root / "state", store, stays, model)
    store.close()


def test_the_manifest_holds_the_training_split_reference(world: World) -> None:
    manifest = read_manifest(world.artifact)
    reference = manifest["reference"]
    frame, _ = load_dataset(world.data)
    train_rows, _ = split(frame, SEED)
    assert reference["stays"] == len(train_rows) == manifest["split"]["train_rows"]
    assert reference["readmission_rate"] == pytest.approx(frame["readmitted_30d"].iloc[train_rows].mean())
    assert list(reference["features"]) == list(FEATURES)
    for name, facts in reference["features"].items():
        assert len(facts["shares"]) == len(facts["edges"]) + 1 and sum(facts["shares"]) == pytest.approx(1.0)
        assert facts["edges"] == sorted(set(facts["edges"])), name
    assert reference["features"]["sex_female"]["edges"] == [0.0]  # a 0/1 feature: two bins
    assert reference["features"]["plan_other"]["shares"] == [1.0, 0.0]  # never seen in training: still two bins
    assert min(reference["features"]["lace_total"]["shares"]) > 0  # decile edges are observed values
    assert len(reference["score"]["shares"]) == 10
    assert all(s == pytest.approx(0.1, abs=0.01) for s in reference["score"]["shares"])
    # the keys that were there before are unchanged
    for key in ("name", "version", "features", "training_data", "split", "lace_probability", "metrics",
                "model_file"):
        assert key in manifest
    assert manifest["metrics"]["validation"]["auc_ci95"][0] < manifest["metrics"]["validation"]["auc"]


def test_in_distribution_stays_show_no_drift_and_realised_performance(world: World) -> None:
    figures = model_drift(world.store, world.model, since=SINCE, until=UNTIL, now=LATER)
    assert (figures.version, figures.digest, figures.label) == ("1", world.model.digest, "drift-1")
    assert (figures.scored, figures.unreadable, figures.malformed) == (PRODUCTION_MEMBERS, 0, 0)
    assert figures.drift_note is None and figures.score is not None
    assert figures.score.psi is not None and figures.score.psi < 0.1 and figures.score.level == "stable"
    assert len(figures.features) == len(FEATURES)
    assert max(f.psi or 0.0 for f in figures.features) < 0.1, [(f.name, f.psi) for f in figures.features]
    out = figures.outcomes
    assert out is not None
    assert (out.scored, out.labelled, out.awaiting_label, out.unlabelled) == (PRODUCTION_MEMBERS,) * 2 + (0, 0)
    labels = sum(1 for s in world.stays if _readmitted(world.store, s))
    assert out.readmissions == labels
    assert out.auc is not None and 0.6 < out.auc < 0.95
    assert out.brier is not None and 0 < out.brier < 0.25
    assert out.observed_rate_ci95 is not None
    assert out.observed_rate_ci95[0] <= out.mean_predicted <= out.observed_rate_ci95[1]  # type: ignore[operator]
    assert out.validation_auc_ci95 is not None and out.training_rate is not None
    assert not any(a.startswith(("score PSI", "feature PSI")) for a in figures.alerts)
    assert not any(world.stays[0].member_id in a for a in figures.alerts)


def _readmitted(store: SqlCareRecordStore, stay: Stay) -> bool:
    from learning.features import readmitted_within_30_days

    return readmitted_within_30_days(store, stay.member_id, stay.encounter_id)


def _only(world: World, folder: Path, keep: object,
          distort: Callable[[np.ndarray], np.ndarray] | None = None) -> SqlCareRecordStore:
    """The production members again (same seed, same records) with the champion's scores of the stays ``keep``
    accepts only."""
    where = locate(folder)
    generate(where, PRODUCTION_MEMBERS, SEED + 4)
    store = SqlCareRecordStore(where.records)
    _score(store, ModelRegistry(world.state), [s for s in world.stays if keep(s)],  # type: ignore[operator]
           distort=distort)
    return store


def test_a_shifted_population_is_flagged(world: World, tmp_path: Path) -> None:
    """Only high-LACE stays scored: the score and the LACE parts drift; only the oldest members: age drifts."""
    high = _only(world, tmp_path / "high", lambda s: s.features["lace_total"] >= 10)
    try:
        figures = model_drift(high, world.model, since=SINCE, until=UNTIL, now=LATER)
    finally:
        high.close()
    assert 100 <= figures.scored < PRODUCTION_MEMBERS
    by_name = {f.name: f for f in figures.features}
    assert figures.score is not None and figures.score.level == "significant"
    assert by_name["lace_total"].level == "significant" and by_name["lace_total"].psi > 1.0  # type: ignore[operator]
    assert by_name["lace_total"].mean > by_name["lace_total"].reference_mean  # type: ignore[operator]
    assert any(a.startswith("score PSI") and "retrain" in a for a in figures.alerts)
    assert any(a.startswith("feature PSI") and "lace_total" in a for a in figures.alerts)

    old = _only(world, tmp_path / "old", lambda s: s.features["age_years"] >= 80)
    try:
        aged = model_drift(old, world.model, since=SINCE, until=UNTIL, now=LATER)
    finally:
        old.close()
    ages = {f.name: f for f in aged.features}
    assert ages["age_years"].level == "significant" and ages["age_band"].level == "significant"
    assert ages["sex_female"].psi is not None
    assert ages["sex_female"].psi < ages["age_years"].psi  # type: ignore[operator]


def test_scores_that_no_longer_rank_or_calibrate_raise_the_outcome_alerts(world: World, tmp_path: Path) -> None:
    """Scores shuffled across stays and inflated: the realised AUC falls below the validation interval and the
    mean predicted leaves the observed rate's interval; the in-distribution scores raise neither."""
    shuffle = np.random.default_rng(3).permutation(PRODUCTION_MEMBERS)
    broken = _only(world, tmp_path, lambda _: True, distort=lambda p: np.minimum(1.0, p[shuffle] * 2.5))
    try:
        figures = model_drift(broken, world.model, since=SINCE, until=UNTIL, now=LATER)
    finally:
        broken.close()
    out = figures.outcomes
    assert out is not None and out.auc is not None and out.validation_auc_ci95 is not None
    assert out.auc < out.validation_auc_ci95[0] and out.calibration_gap is not None and out.calibration_gap > 0.1
    assert any(a.startswith("realised AUC") and "below the validation AUC's 95 % lower bound" in a
               for a in figures.alerts)
    assert any(a.startswith("calibration: mean predicted") and "recalibrate or retrain" in a for a in figures.alerts)
    healthy = model_drift(world.store, world.model, since=SINCE, until=UNTIL, now=LATER)
    assert not any(a.startswith(("realised AUC", "calibration")) for a in healthy.alerts)


def test_labels_wait_for_the_window_and_few_stays_give_no_psi(world: World) -> None:
    """On 2025-04-01 only stays discharged by 2025-03-02 have a label; a ten-day window is too small for PSI."""
    now = datetime(2025, 4, 1, tzinfo=UTC)
    figures = model_drift(world.store, world.model, since=SINCE, until=now, now=now)
    out = figures.outcomes
    assert out is not None
    closed = sum(1 for s in world.stays if s.discharged + timedelta(days=30) <= now)
    opened = sum(1 for s in world.stays if s.discharged + timedelta(days=30) > now
                 and s.discharged + timedelta(hours=1) < now)
    assert (out.labelled, out.awaiting_label) == (closed, opened) and closed > 100 and opened > 50

    short = model_drift(world.store, world.model, since=datetime(2025, 3, 1, tzinfo=UTC),
                        until=datetime(2025, 3, 4, tzinfo=UTC), now=LATER)
    assert 0 < short.scored < 100
    assert short.drift_note == f"too few scored stays ({short.scored} < 100): no PSI"
    assert short.score is not None and short.score.psi is None and short.score.n == short.scored
    assert all(f.psi is None for f in short.features)
    assert short.outcomes is not None and short.outcomes.auc is None
    assert short.outcomes.note == f"too few labelled stays ({short.scored} < 100): AUC, Brier and calibration " \
                                  "not judged"
    assert short.alerts == []


def test_unreadable_features_are_counted_and_other_versions_kept_apart(world: World) -> None:
    stay = world.stays[0]
    patient = world.store.get("Patient", stay.member_id)
    assert patient is not None
    earlier = ModelScore(name=MODEL, version="0", label="older", digest="e" * 64, alias=CHAMPION, probability=0.3)
    other = world.stays[1]
    extra = risk_assessments(RiskScore(status="scored", model=earlier), other.member_id, other.encounter_id,
                             other.discharged + timedelta(hours=2))
    world.store.put_many([{k: v for k, v in patient.items() if k != "gender"}, *extra])
    try:
        figures = model_drift(world.store, world.model, since=SINCE, until=UNTIL, now=LATER)
    finally:
        world.store.put_many([patient])
        world.store.db.write(lambda w: w.rows("DELETE FROM resources WHERE id = :i", {"i": extra[0]["id"]}))
    assert (figures.scored, figures.unreadable, figures.unreadable_reasons) == (
        PRODUCTION_MEMBERS, 1, {"missing sex": 1})
    assert figures.score is not None and figures.score.n == PRODUCTION_MEMBERS
    assert {f.n for f in figures.features} == {PRODUCTION_MEMBERS - 1}  # never imputed
    assert [(v.model, v.digest, v.scored) for v in figures.earlier_versions] == [(f"{MODEL}/0", "e" * 16, 1)]
    assert stay.member_id not in json.dumps(figures.model_dump(mode="json"))


def test_a_manifest_without_reference_says_so_and_keeps_outcomes(world: World, tmp_path: Path) -> None:
    old = tmp_path / "old-model"
    shutil.copytree(world.artifact, old)
    manifest = read_manifest(old)
    del manifest["reference"]
    write_manifest(old, manifest)
    model, reason = champion_to_monitor(_champion(tmp_path / "state", old))
    assert model is not None and reason is None and model.digest == world.model.digest
    figures = model_drift(world.store, model, since=SINCE, until=UNTIL, now=LATER)
    assert figures.drift_note == NO_REFERENCE == ("no reference distribution in this model's manifest; retrain to "
                                                  "monitor drift")
    assert figures.score is None and figures.features == [] and figures.scored == PRODUCTION_MEMBERS
    assert figures.outcomes is not None and figures.outcomes.auc is not None
    assert figures.outcomes.training_rate is None
    page = render_html(monitor_report([], None, now=LATER, risk_model=figures))
    assert "retrain to monitor drift" in page


def test_no_registry_no_champion_and_a_changed_manifest(world: World, tmp_path: Path) -> None:
    empty = risk_model_figures(world.store, ModelRegistry(tmp_path / "empty"), since=SINCE, until=UNTIL, now=LATER)
    assert empty.message is not None and "no model registry" in empty.message and empty.outcomes is None
    registry = ModelRegistry(tmp_path / "unpromoted")
    registry.register(world.artifact)
    unpromoted = risk_model_figures(world.store, registry, since=SINCE, until=UNTIL, now=LATER)
    assert unpromoted.message is not None and f"no champion of {MODEL}" in unpromoted.message
    assert "careloom model promote" in unpromoted.message
    changed = _champion(tmp_path / "changed", world.artifact)
    source = changed.by_alias(MODEL, CHAMPION).source  # type: ignore[union-attr]
    (source / MANIFEST_FILE).write_text((source / MANIFEST_FILE).read_text() + "\n")
    model, reason = champion_to_monitor(changed)
    assert model is None and reason is not None and "is not the one the registry recorded" in reason
    page = render_html(monitor_report([], None, now=LATER, risk_model=unpromoted))
    assert "<h2>Risk model: drift and realised outcomes</h2>" in page and "no champion of" in page


def test_the_report_page_shows_the_section(world: World) -> None:
    figures = model_drift(world.store, world.model, since=SINCE, until=UNTIL, now=LATER)
    report = monitor_report([], None, now=LATER, risk_model=figures)
    page = render_html(report)
    assert "Risk model: drift and realised outcomes" in page and "lace_total" in page
    assert "Realised outcomes" in page and "data:image/png;base64," in page
    dumped = json.loads(report.model_dump_json())
    assert dumped["risk_model"]["scored"] == PRODUCTION_MEMBERS
    assert dumped["risk_model"]["outcomes"]["auc"] == figures.outcomes.auc  # type: ignore[union-attr]


def test_the_command_prints_the_risk_model_section(world: World, tmp_path: Path) -> None:
    """`careloom monitor report` reads the champion from the state folder's registry and the scores from its
    records database: the last 30 days' scores for drift; without a registry the section says so."""
    state = tmp_path / "state"
    where = locate(state)  # records.db in the state folder: the configured records database
    generate(where, 300, SEED + 9)
    store = SqlCareRecordStore(where.records)
    try:
        stays = _stays(store, where.cohort)
        registry = _champion(state, world.artifact)
        _score(store, registry, stays, at=datetime.now(UTC) - timedelta(days=10))
    finally:
        store.close()
    env = clean_env(CARELOOM_STATE_DIR=str(state), CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING")
    text = careloom(env, "monitor", "report")
    assert 0 == text.returncode, text.stderr
    assert f"risk model: champion {MODEL} version 1 (drift-1" in text.stdout
    assert "300 stay(s) scored" in text.stdout and "risk model drift against the training split" in text.stdout
    assert "300 labelled" in text.stdout
    as_json = careloom(env, "monitor", "report", "--json", "--html", str(tmp_path / "out"))
    assert 0 == as_json.returncode, as_json.stderr
    risk = json.loads(as_json.stdout)["risk_model"]
    assert (risk["scored"], risk["version"], risk["outcomes"]["labelled"]) == (300, "1", 300)
    assert risk["score"]["psi"] is not None and len(risk["features"]) == len(FEATURES)
    assert "Risk model: drift and realised outcomes" in (tmp_path / "out" / "monitoring-report.html").read_text()
    narrow = careloom(env, "monitor", "report", "--json", "--model-window-days", "5")
    assert 0 == narrow.returncode and json.loads(narrow.stdout)["risk_model"]["scored"] == 0

    bare = careloom(clean_env(CARELOOM_STATE_DIR=str(tmp_path / "bare"), CARELOOM_LOG_FORMAT="json",
                              CARELOOM_LOG_LEVEL="WARNING"), "monitor", "report")
    assert 0 == bare.returncode, bare.stderr
    assert "risk model: no model registry" in bare.stdout and "no risk model to monitor" in bare.stdout
