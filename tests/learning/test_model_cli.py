"""``careloom model data|train|validate`` as a user runs them (a real process), and their refusals."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import careloom, clean_env


def test_data_train_validate_and_a_tampered_model(tmp_path: Path) -> None:
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"))
    data = tmp_path / "data"
    made = careloom(env, "model", "data", "--members", "300", "--seed", "3", "--out", str(data), "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["rows"] == 300 and (data / "records.db").is_file()
    trained = careloom(env, "model", "train", "--data", str(data), "--seed", "3", "--version", "cli-1", "--json")
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads(trained.stdout)["manifest"]
    assert manifest["version"] == "cli-1" and (data / "model" / "manifest.json").is_file()
    checked = careloom(env, "model", "validate", "--data", str(data), "--json")
    assert checked.returncode == 0, checked.stderr
    figures = json.loads(checked.stdout)
    assert figures["model"]["model_sha256"] == manifest["model_file"]["sha256"]
    assert set(figures["auc"]) == {"model", "lace"}
    table = careloom(env, "model", "validate", "--data", str(data))
    assert table.returncode == 0 and "largest subgroup AUC gap" in table.stdout
    _compare_on_the_table(env, tmp_path, data)
    with (data / "model" / "model.joblib").open("ab") as handle:
        handle.write(b"tampered")
    refused = careloom(env, "model", "validate", "--data", str(data))
    assert refused.returncode == 1
    assert "does not match its manifest" in refused.stderr


def test_train_without_data_names_the_fix(tmp_path: Path) -> None:
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"))
    refused = careloom(env, "model", "train", "--data", str(tmp_path / "nothing"))
    assert refused.returncode == 1
    assert "careloom model data" in refused.stderr


def _compare_on_the_table(env: dict[str, str], tmp_path: Path, data: Path) -> None:
    """``compare --data`` keeps the table comparison; without it, ``compare`` reads the recorded scores (none in a
    new state folder: it says how to get them)."""
    from learning.registry import GateResult, ModelRegistry

    other = careloom(env, "model", "train", "--data", str(data), "--seed", "4", "--version", "cli-2", "--out",
                     str(tmp_path / "other"))
    assert other.returncode == 0, other.stderr
    registry = ModelRegistry(tmp_path / "state")
    registry.register(data / "model")
    registry.register(tmp_path / "other")
    registry.promote("readmission-30d-hgb", "1", gate=lambda _: GateResult(True, "test"))
    registry.promote("readmission-30d-hgb", "2", shadow=True)
    table = careloom(env, "model", "compare", "--data", str(data), "--json")
    assert table.returncode == 0, table.stderr
    assert [(s["role"], s["version"]) for s in json.loads(table.stdout)["scores"]] == [
        ("champion", "1"), ("challenger", "2"), ("LACE", None)]
    recorded = careloom(env, "model", "compare")
    assert recorded.returncode == 1
    assert "no scores of readmission-30d-hgb recorded" in recorded.stderr and "--shadow" in recorded.stderr
