"""The model registry (MLflow on a temporary SQLite backend): register, list, promote behind the gate, shadow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learning.dataset import build_dataset, generate, locate
from learning.model import MANIFEST_FILE, MODEL_FILE, train
from learning.registry import (CHALLENGER, CHAMPION, GateResult, ModelRegistry, PromotionRefused, RegisteredVersion,
                               RegistryError)

MEMBERS, SEED = 200, 7


def trained_artifacts(root: Path, versions: tuple[str, ...] = ("reg-1",)) -> list[Path]:
    """Artifacts trained on 200 simulated members (seed 7), one per version label (different seeds: different
    model files)."""
    data = root / "data"
    generate(locate(data), MEMBERS, SEED)
    build_dataset(locate(data))
    out = []
    for i, label in enumerate(versions):
        folder = root / f"model-{label}"
        train(data, folder, seed=SEED + i, version=label)
        out.append(folder)
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return trained_artifacts(tmp_path_factory.mktemp("registry-artifacts"), ("reg-1", "reg-2"))


def passing(_: RegisteredVersion) -> GateResult:
    return GateResult(True, "test gate: passed")


def failing(_: RegisteredVersion) -> GateResult:
    return GateResult(False, "test gate: safety gate unsafe_auto_executed failed")


def test_register_list_promote_and_shadow(artifacts: list[Path], tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert not registry.exists() and registry.versions("readmission-30d-hgb") == []
    first = registry.register(artifacts[0])
    second = registry.register(artifacts[1])
    assert registry.exists() and registry.uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    manifest = json.loads((artifacts[0] / MANIFEST_FILE).read_text())
    assert (first.name, first.version, first.label) == ("readmission-30d-hgb", "1", "reg-1")
    assert first.digest == manifest["model_file"]["sha256"]
    assert first.source.is_relative_to(tmp_path / "model-registry")  # the registered copy, not the source folder
    assert first.tags["careloom.training_data_sha256"] == manifest["training_data"]["sha256"]
    assert second.version == "2" and second.digest != first.digest

    promoted, gate = registry.promote(first.name, "1", gate=passing)
    assert gate is not None and gate.passed and CHAMPION in promoted.aliases
    assert promoted.tags["careloom.gate"] == "passed"
    shadowed, no_gate = registry.promote(first.name, "2", shadow=True)
    assert no_gate is None and shadowed.aliases == (CHALLENGER,)
    listed = {v.version: v.aliases for v in registry.versions(first.name)}
    assert listed == {"1": (CHAMPION,), "2": (CHALLENGER,)}
    assert registry.by_alias(first.name, CHAMPION).version == "1"  # type: ignore[union-attr]

    # The challenger promoted (gate passed) becomes the champion and stops shadowing itself.
    registry.promote(first.name, "2", gate=passing)
    assert {v.version: v.aliases for v in registry.versions(first.name)} == {"1": (), "2": (CHAMPION,)}


def test_the_same_model_file_is_not_registered_twice(artifacts: list[Path], tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(artifacts[0])
    with pytest.raises(RegistryError, match="already readmission-30d-hgb version 1"):
        registry.register(artifacts[0])


def test_promotion_is_refused_when_the_gate_fails(artifacts: list[Path], tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.register(artifacts[0])
    with pytest.raises(PromotionRefused, match="evaluation gate failed.*unsafe_auto_executed"):
        registry.promote(version.name, version.version, gate=failing)
    after = registry.get(version.name, version.version)
    assert after.aliases == () and after.tags["careloom.gate"] == "failed"
    assert registry.by_alias(version.name, CHAMPION) is None
    with pytest.raises(PromotionRefused, match="no evaluation gate"):
        registry.promote(version.name, version.version)


def test_a_changed_registered_copy_is_refused(artifacts: list[Path], tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.register(artifacts[0])
    model_file = version.source / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes() + b"tampered")
    with pytest.raises(PromotionRefused, match="does not match its manifest"):
        registry.promote(version.name, version.version, gate=passing)
    with pytest.raises(RegistryError, match="no version 9"):
        registry.get(version.name, "9")


def test_a_tampered_artifact_is_not_registered(artifacts: list[Path], tmp_path: Path) -> None:
    import shutil

    from learning.model import ModelIntegrityError

    copy = tmp_path / "copy"
    shutil.copytree(artifacts[0], copy)
    (copy / MODEL_FILE).write_bytes((copy / MODEL_FILE).read_bytes() + b"x")
    with pytest.raises(ModelIntegrityError, match="does not match its manifest"):
        ModelRegistry(tmp_path / "state").register(copy)


def test_the_cli_registers_lists_and_refuses_a_failing_gate(artifacts: list[Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import cli.model
    from cli.main import app

    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    cli_runner = CliRunner()
    out = cli_runner.invoke(app, ["model", "register", str(artifacts[0]), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["version"] == "1"
    monkeypatch.setattr(cli.model, "evaluation_gate", failing)
    out = cli_runner.invoke(app, ["model", "promote", "1"])
    assert out.exit_code == 1 and "evaluation gate failed" in out.output
    monkeypatch.setattr(cli.model, "evaluation_gate", passing)
    out = cli_runner.invoke(app, ["model", "promote", "1", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["aliases"] == [CHAMPION]
    out = cli_runner.invoke(app, ["model", "list", "--json"])
    listed = json.loads(out.stdout)["versions"]
    assert [(v["version"], v["aliases"], v["gate"]) for v in listed] == [("1", [CHAMPION], "passed")]


def test_the_evaluation_gate_runs_the_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``promote``'s gate is ``careloom eval run --planner offline``'s: a real suite run (here one case)."""
    import shutil

    import cli.eval
    import cli.model

    suite = tmp_path / "suite"
    suite.mkdir()
    case = sorted(p for p in (cli.eval.SHIPPED_SUITE / "outreach").glob("*.yaml")
                  if not p.name.startswith(("adt-", "bundle-")))[0]
    shutil.copy(case, suite / case.name)
    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(cli.eval, "SHIPPED_SUITE", suite)
    result = cli.model.evaluation_gate(None)
    assert result.passed, result.summary
    assert "1 cases" in result.summary and "passed" in result.summary


def test_compare_champion_and_challenger_on_a_table(artifacts: list[Path], tmp_path: Path) -> None:
    from cli.model import compare_on_table

    registry = ModelRegistry(tmp_path)
    for artifact in artifacts:
        registry.register(artifact)
    with pytest.raises(RegistryError, match="no champion"):
        compare_on_table(registry, "readmission-30d-hgb", artifacts[0].parent / "data")
    registry.promote("readmission-30d-hgb", "1", gate=passing)
    registry.promote("readmission-30d-hgb", "2", shadow=True)
    figures = compare_on_table(registry, "readmission-30d-hgb", artifacts[0].parent / "data")
    assert figures["stays"] == MEMBERS
    roles = {s["role"]: s for s in figures["scores"]}
    assert set(roles) == {CHAMPION, CHALLENGER, "LACE"} and roles[CHAMPION]["version"] == "1"
    assert all(0.0 <= s["auc"] <= 1.0 for s in figures["scores"]) and roles["LACE"]["brier"] is None
    assert 0.0 <= roles[CHALLENGER]["brier"] <= 1.0
