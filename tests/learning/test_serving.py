"""Serving the registry's champion and challenger in the risk tool; LACE with a reason on every problem."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path

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
