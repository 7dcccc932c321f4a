"""Serving the registry's champion and challenger in the risk tool; LACE with a reason on every problem."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from learning.features import stay_features
from learning.model import MODEL_FILE, load_model
from learning.registry import GateResult, ModelRegistry
from learning.serving import RegistryScorer, scorer_from_registry
from store.sql_records import SqlCareRecordStore
from tests.learning.test_registry import trained_artifacts
from tools.risk import ModelOutcome, RiskInput


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("serving")
    return root, trained_artifacts(root, ("serve-1", "serve-2"))


@pytest.fixture(scope="module")
def records(trained: tuple[Path, list[Path]]) -> Iterator[tuple[SqlCareRecordStore, list[tuple[str, str]]]]:
    root, _ = trained
    store = SqlCareRecordStore(root / "data" / "records.db")
    with (root / "data" / "cohort.csv").open() as handle:
        stays = [(r["member_id"], r["encounter_id"]) for r in csv.DictReader(handle)]
    yield store, stays
    store.close()


def _promoted(state: Path, artifacts: list[Path], *, shadow: bool = True) -> ModelRegistry:
    registry = ModelRegistry(state)
    for artifact in artifacts:
        registry.register(artifact)
    registry.promote("readmission-30d-hgb", "1", gate=lambda _: GateResult(True, "test"))
    if shadow and len(artifacts) > 1:
        registry.promote("readmission-30d-hgb", "2", shadow=True)
    return registry


def test_the_champion_and_the_challenger_score_the_stay(trained: tuple, records: tuple, tmp_path: Path) -> None:
    _, artifacts = trained
    store, stays = records
    registry = _promoted(tmp_path, artifacts)
    scorer = scorer_from_registry(tmp_path)
    member_id, encounter_id = stays[0]
    outcome = scorer.score(store, member_id, encounter_id)
    champion, challenger = registry.by_alias("readmission-30d-hgb", "champion"), registry.by_alias(
        "readmission-30d-hgb", "challenger")
    assert outcome.model is not None and outcome.shadow is not None and outcome.model_reason is None
    assert (outcome.model.version, outcome.model.digest, outcome.model.alias, outcome.model.label) == (
        "1", champion.digest, "champion", "serve-1")  # type: ignore[union-attr]
    assert (outcome.shadow.version, outcome.shadow.digest, outcome.shadow.alias) == (
        "2", challenger.digest, "challenger")  # type: ignore[union-attr]
    # The same probability as the artifact gives for the features at the discharge.
    expected = load_model(artifacts[0]).score(stay_features(store, member_id, encounter_id))
    assert outcome.model.probability == pytest.approx(expected, abs=1e-6)


def test_a_digest_mismatch_keeps_lace_and_says_so(trained: tuple, records: tuple, tmp_path: Path) -> None:
    _, artifacts = trained
    store, stays = records
    registry = _promoted(tmp_path, artifacts[:1])
    registered = registry.by_alias("readmission-30d-hgb", "champion")
    assert registered is not None
    model_file = registered.source / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes() + b"replaced")
    outcome = scorer_from_registry(tmp_path).score(store, *stays[0])
    assert outcome.model is None
    assert outcome.model_reason is not None and "digest does not match" in outcome.model_reason
    assert "LACE alone" in outcome.model_reason


def test_no_registry_no_champion_and_a_missing_feature(trained: tuple, records: tuple, tmp_path: Path) -> None:
    _, artifacts = trained
    store, stays = records
    none = scorer_from_registry(tmp_path / "empty").score(store, *stays[0])
    assert none.model is None and "no model registry" in (none.model_reason or "")
    registry = ModelRegistry(tmp_path / "unpromoted")
    registry.register(artifacts[0])
    unpromoted = scorer_from_registry(tmp_path / "unpromoted").score(store, *stays[0])
    assert unpromoted.model is None and "no champion" in (unpromoted.model_reason or "")
    _promoted(tmp_path / "promoted", artifacts[:1])
    scorer = scorer_from_registry(tmp_path / "promoted")
    member_id, encounter_id = stays[1]
    patient = store.get("Patient", member_id)
    assert patient is not None
    store.put_many([{k: v for k, v in patient.items() if k != "gender"} | {"id": member_id}])
    try:
        missing = scorer.score(store, member_id, encounter_id)
    finally:
        store.put_many([patient])
    assert missing.model is None and missing.model_reason is not None
    assert "missing feature sex" in missing.model_reason and member_id not in missing.model_reason
    unknown = scorer.score(store, "no-such-member", "no-such-stay")
    assert unknown.model is None and "could not be read" in (unknown.model_reason or "")


def test_the_risk_activity_adds_the_model_to_lace(trained: tuple, records: tuple, tmp_path: Path) -> None:
    """CareTools with the injected scorer: LACE as before, the model beside it; without ids, LACE and a reason."""
    from unittest import mock

    from runtime.settings import Settings
    from tools.activities import CareTools

    _, artifacts = trained
    store, stays = records
    _promoted(tmp_path, artifacts)
    tools = CareTools(store, Settings(state_dir=tmp_path, _env_file=None), gate=mock.Mock(),
                      scorer=scorer_from_registry(tmp_path))
    data = RiskInput(length_of_stay_days=4, acute_admission=True, condition_codes=["I50.9"], ed_visits_6mo=1)
    with mock.patch("tools.activities._bind"):
        bare = tools.score_readmission_risk(data)
        scored = tools.score_readmission_risk(data.model_copy(update={"member_id": stays[0][0],
                                                                       "encounter_id": stays[0][1]}))
    assert bare.lace == scored.lace == 4 + 3 + 1 + 1
    assert bare.model is None and "passed no member" in (bare.model_reason or "")
    assert scored.model is not None and scored.model.version == "1" and scored.shadow is not None
    # Both scores are on record as FHIR RiskAssessments (what compare and drift monitoring read).
    recorded = store.find_for_member("RiskAssessment", stays[0][0])
    by_alias = {r["method"]["text"]: r for r in recorded if r["encounter"]["reference"] == f"Encounter/{stays[0][1]}"}
    assert set(by_alias) == {"champion", "challenger"}
    assert by_alias["champion"]["prediction"][0]["probabilityDecimal"] == scored.model.probability
    assert by_alias["champion"]["identifier"][0]["value"] == scored.model.digest
    assert by_alias["challenger"]["method"]["coding"][0]["code"] == f"readmission-30d-hgb/{scored.shadow.version}"


def test_the_champion_score_is_explained_in_words(trained: tuple, records: tuple, tmp_path: Path) -> None:
    """SHAP contributions on the probability scale, largest first, worded from the stay's values; they add up
    to the score minus the base rate; the shadow score carries none."""
    from learning.explain import Explainer

    _, artifacts = trained
    store, stays = records
    _promoted(tmp_path, artifacts)
    scorer = scorer_from_registry(tmp_path)
    assert scorer.champion is not None
    explained = 0
    for member_id, encounter_id in stays[:40]:
        outcome = scorer.score(store, member_id, encounter_id)
        assert outcome.model is not None and outcome.shadow is not None
        assert outcome.shadow.contributions == []
        model = outcome.model
        assert model.base_probability is not None and 0 < model.base_probability < 1
        sizes = [abs(c.contribution) for c in model.contributions]
        assert sizes == sorted(sizes, reverse=True) and len(sizes) <= 5
        for c in model.contributions:
            assert c.words.endswith(f"{c.contribution:+.2f}") and member_id not in c.words
        explained += bool(model.contributions)
        features = stay_features(store, member_id, encounter_id)
        every = Explainer(scorer.champion.model.estimator, scorer.champion.model.features)
        row = np.asarray([[float(features[f]) for f in every.features]])
        parts = every._explainer.shap_values(row)
        raw = float(scorer.champion.model.estimator.decision_function(row)[0])
        assert abs(float(parts.sum()) + every.base_value - raw) < 1e-6  # SHAP: base + parts = the model's output
        everything = every.contributions(features, model.probability, top=len(every.features))
        assert abs(sum(c.contribution for c in everything) - (model.probability - model.base_probability)) \
            <= 0.005 * (len(every.features) - len(everything)) + 1e-3
    assert explained >= 30  # nearly every stay has something to say


def test_feature_words_read_like_a_chart() -> None:
    from learning.explain import feature_words

    assert feature_words("ed_visits_6mo", 3) == "3 ED visits in the 6 months before"
    assert feature_words("ed_visits_6mo", 1) == "1 ED visit in the 6 months before"
    assert feature_words("charlson_congestive_heart_failure", 1) == "congestive heart failure on record"
    assert feature_words("disposition_snf", 1) == "discharged to a skilled nursing facility"
    assert feature_words("plan_medicaid", 0) == "not a Medicaid plan"
    assert feature_words("age_band", 2) == "age band 65-74"
    assert feature_words("disposition_aadvice", 1) == "left against medical advice"
    assert feature_words("disposition_home", 0) == "not discharged home"


def test_scoring_cost(trained: tuple, records: tuple, tmp_path: Path) -> None:
    """Wall and CPU ms per score (features from the store + champion + challenger), printed for the note."""
    _, artifacts = trained
    store, stays = records
    _promoted(tmp_path, artifacts)
    scorer = scorer_from_registry(tmp_path)
    sample = stays[:100]
    scorer.score(store, *sample[0])  # warm
    wall, cpu = time.perf_counter(), time.process_time()
    outcomes: list[ModelOutcome] = [scorer.score(store, m, e) for m, e in sample]
    wall, cpu = (time.perf_counter() - wall) * 1000 / len(sample), (time.process_time() - cpu) * 1000 / len(sample)
    assert all(o.model is not None and o.shadow is not None for o in outcomes)
    alone = RegistryScorer(scorer.champion, None, None, "none")
    champion_cpu = time.process_time()
    for m, e in sample:
        alone.score(store, m, e)
    champion_cpu = (time.process_time() - champion_cpu) * 1000 / len(sample)
    features_ms = time.perf_counter()
    for m, e in sample:
        stay_features(store, m, e)
    features_ms = (time.perf_counter() - features_ms) * 1000 / len(sample)
    print(f"\nscoring cost over {len(sample)} stays: {wall:.2f} ms wall, {cpu:.2f} ms CPU per score "
          f"(champion + challenger), {champion_cpu:.2f} ms CPU with the champion alone, of which features "
          f"{features_ms:.2f} ms wall")


def test_a_champion_set_outside_promote_or_pointing_elsewhere_is_refused(trained: tuple, records: tuple,
                                                                         tmp_path: Path) -> None:
    """Anyone who can write the registry's database could set the champion alias without the gate, or point a
    version's source at files of their own: neither is served (LACE, with the reason), nothing is unpickled."""
    from dataclasses import replace

    from learning.model import ModelIntegrityError

    _, artifacts = trained
    registry = ModelRegistry(tmp_path)
    for artifact in artifacts:
        registry.register(artifact)
    registry.client.set_registered_model_alias("readmission-30d-hgb", "champion", "2")  # no gate ran
    scorer = scorer_from_registry(tmp_path)
    assert scorer.champion is None and "has not passed the evaluation gate" in (scorer.champion_reason or "")
    version = registry.get("readmission-30d-hgb", "1")
    elsewhere = replace(version, source=artifacts[0])  # the same, verified files, but outside the registry
    with pytest.raises(ModelIntegrityError, match="not in this registry's artifacts folder"):
        registry.verify(elsewhere)


def test_the_scores_are_recorded_once_and_a_failed_record_keeps_the_score(trained: tuple, records: tuple,
                                                                         tmp_path: Path) -> None:
    """A stay scored again by the same version keeps its first RiskAssessment; a store that refuses the record
    costs the record only: the risk step still returns LACE and the model's score."""
    from unittest import mock

    from runtime.settings import Settings
    from store.database import StoreError
    from tools.activities import CareTools
    from tools.risk import record_assessments

    _, artifacts = trained
    store, stays = records
    _promoted(tmp_path, artifacts)
    scorer = scorer_from_registry(tmp_path)
    member_id, encounter_id = stays[3]
    data = RiskInput(length_of_stay_days=4, acute_admission=True, condition_codes=["I50.9"], ed_visits_6mo=1,
                     member_id=member_id, encounter_id=encounter_id)

    class RefusingStore(SqlCareRecordStore):
        def put_many(self, resources):  # noqa: ANN001, ANN202
            raise StoreError("the care records database refused the write: disk full")

    refusing = RefusingStore(store.db)
    tools = CareTools(refusing, Settings(state_dir=tmp_path, _env_file=None), gate=mock.Mock(), scorer=scorer)
    with mock.patch("tools.activities._bind"):
        scored = tools.score_readmission_risk(data)
    assert scored.lace == 9 and scored.model is not None and scored.shadow is not None
    assert [r for r in store.find_for_member("RiskAssessment", member_id)
            if r["encounter"]["reference"] == f"Encounter/{encounter_id}"] == []
    from datetime import UTC, datetime, timedelta

    first = datetime(2026, 12, 1, tzinfo=UTC)
    assert record_assessments(store, scored, member_id, encounter_id, first) == 2
    assert record_assessments(store, scored, member_id, encounter_id, first + timedelta(days=3)) == 0
    kept = [r for r in store.find_for_member("RiskAssessment", member_id)
            if r["encounter"]["reference"] == f"Encounter/{encounter_id}"]
    assert len(kept) == 2 and {r["occurrenceDateTime"] for r in kept} == {first.isoformat()}
