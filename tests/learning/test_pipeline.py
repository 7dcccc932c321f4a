"""Generate, build, train and validate end to end on 600 simulated members (seed 7); the artifact's integrity."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest

from learning.dataset import DatasetError, build_dataset, dataset_digest, generate, load_dataset, locate
from learning.features import FEATURES, MissingFeature
from learning.model import MANIFEST_FILE, MODEL_FILE, ModelIntegrityError, load_model, train
from learning.validation import validate

MEMBERS, SEED = 600, 7


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict]:
    data = tmp_path_factory.mktemp("learning") / "data"
    generate(locate(data), MEMBERS, SEED)
    _, rows, skipped = build_dataset(locate(data))
    assert (rows, skipped) == (MEMBERS, 0)
    model = data.parent / "model"
    manifest = train(data, model, seed=SEED, version="test-1")
    figures = validate(model, data)
    return data, model, manifest, figures


def test_same_seed_same_data(pipeline: tuple, tmp_path: Path) -> None:
    data, *_ = pipeline
    again = locate(tmp_path / "again.db")  # a records database file: the table is written beside it
    generate(again, MEMBERS, SEED)
    build_dataset(again)
    assert dataset_digest(again.dataset) == dataset_digest(locate(data).dataset)


def test_the_generator_refuses_a_store_with_records(pipeline: tuple) -> None:
    data, *_ = pipeline
    with pytest.raises(DatasetError, match="already holds"):
        generate(locate(data), 10, SEED)


def test_the_artifact_and_its_manifest(pipeline: tuple) -> None:
    data, model, manifest, _ = pipeline
    on_disk = json.loads((model / MANIFEST_FILE).read_text())
    assert on_disk["name"] == manifest["name"] == "readmission-30d-hgb" and on_disk["version"] == "test-1"
    assert on_disk["features"] == list(FEATURES)
    assert on_disk["model_file"]["sha256"] == hashlib.sha256((model / MODEL_FILE).read_bytes()).hexdigest()
    frame, digest = load_dataset(data)
    assert on_disk["training_data"]["sha256"] == digest and on_disk["training_data"]["rows"] == len(frame)
    assert on_disk["seed"] == SEED and on_disk["params"]["random_state"] == SEED
    assert on_disk["split"]["train_rows"] + on_disk["split"]["held_out_rows"] == MEMBERS
    assert "git_sha" in on_disk["code_version"]
    assert on_disk["metrics"]["train"]["train_seconds"] >= 0
    assert "validation" in on_disk["metrics"]  # validate recorded its summary


def test_validation_figures_are_computed(pipeline: tuple) -> None:
    data, model, _, figures = pipeline
    for key in ("model", "lace"):
        auc, (low, high) = figures["auc"][key], figures["auc_ci95"][key]
        assert 0 <= low <= auc <= high <= 1
        assert 0 < figures["brier"][key] < 1
        assert figures["calibration"][key] and all(0 <= b["observed_rate"] <= 1 for b in figures["calibration"][key])
    assert figures["auc_ci95"]["resamples"] >= 900
    assert set(figures["subgroups"]) == {"age_band_label", "sex", "plan_type"}
    assert {g["group"] for g in figures["subgroups"]["sex"]["groups"]} == {"female", "male"}
    gap = figures["largest_subgroup_auc_gap"]
    assert gap["attribute"] in figures["subgroups"] and not math.isnan(gap["gap"]) and gap["gap"] >= 0
    assert (model / "model_card.md").read_text().startswith("# Model card: readmission-30d-hgb test-1")
    card = json.loads((model / "model_card.json").read_text())
    assert card["validation"]["auc"] == figures["auc"]


def test_a_model_file_that_does_not_match_its_manifest_is_refused(pipeline: tuple, tmp_path: Path) -> None:
    data, model, *_ = pipeline
    copy = tmp_path / "tampered"
    shutil.copytree(model, copy)
    with (copy / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelIntegrityError, match="does not match its manifest"):
        load_model(copy)
    with pytest.raises(ModelIntegrityError, match="does not match its manifest"):
        validate(copy, data)
    (copy / MODEL_FILE).unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        load_model(copy)
    with pytest.raises(ModelIntegrityError, match="not a model artifact"):
        load_model(tmp_path)


def test_validation_refuses_other_data(pipeline: tuple, tmp_path: Path) -> None:
    _, model, *_ = pipeline
    other = locate(tmp_path / "other")
    generate(other, 200, SEED + 1)
    build_dataset(other)
    with pytest.raises(DatasetError, match="not the data model"):
        validate(model, other.folder)


def test_a_feature_missing_at_scoring_time_is_refused(pipeline: tuple) -> None:
    data, model, *_ = pipeline
    loaded = load_model(model)
    frame, _ = load_dataset(data)
    row = frame.iloc[0][list(FEATURES)].to_dict()
    assert 0 <= loaded.score(row) <= 1
    del row["ed_visits_6mo"]
    with pytest.raises(MissingFeature, match="ed_visits_6mo"):
        loaded.score(row)
    with pytest.raises(MissingFeature, match="prior_inpatient_12mo"):
        loaded.score_frame(frame.drop(columns=["prior_inpatient_12mo"]))
