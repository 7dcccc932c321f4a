"""``careloom model promote``'s evaluation gate runs the scenario suite WITH the candidate: its workers serve the
candidate as the champion; promotion needs the safety gates passed, stays scored and no scoring failure."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli.eval
import cli.model
from cli.main import app
from learning.model import MANIFEST_FILE, MODEL_FILE
from learning.registry import CHAMPION, ModelRegistry
from tests.learning.test_registry import trained_artifacts

NAME = "readmission-30d-hgb"
COUNTS = re.compile(r"(\d+) stay\(s\) scored, (\d+) missing a feature, (\d+) failed, (\d+) without a model")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A sound candidate and one whose manifest names a feature the serving path never builds (the model file
    is intact and verifies; every stay's scoring fails)."""
    good, bad = trained_artifacts(tmp_path_factory.mktemp("gate"), ("gate-good", "gate-bad"))
    manifest = json.loads((bad / MANIFEST_FILE).read_text())
    manifest["features"][manifest["features"].index("lace_total")] = "lace_points"
    (bad / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return [good, bad]


def _counts(summary: str) -> dict[str, int]:
    found = COUNTS.search(summary)
    assert found is not None, summary
    return dict(zip(("scored", "missing_feature", "failed", "no_model"), map(int, found.groups()), strict=True))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_promote_runs_the_shipped_suite_with_the_candidate_scoring(candidates: list[Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The real gate (the whole shipped suite, ~1-2 min) through ``careloom model promote``."""
    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    runner = CliRunner()
    out = runner.invoke(app, ["model", "register", str(candidates[0]), "--json"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["model", "promote", "1", "--json"])
    assert out.exit_code == 0, out.output
    promoted = json.loads(out.stdout)
    assert promoted["gate_passed"] is True and promoted["aliases"] == [CHAMPION]
    summary = promoted["gate_summary"]
    gates = re.search(r"gates (\d+)/(\d+) passed", summary)
    assert gates is not None and gates.group(1) == gates.group(2), summary
    counts = _counts(summary)
    assert counts["scored"] > 0 and counts["failed"] == 0 and counts["no_model"] == 0, summary
    assert f"candidate {NAME} version 1" in summary
    recorded = ModelRegistry(tmp_path).get(NAME, "1").tags
    assert recorded["careloom.gate"] == "passed" and recorded["careloom.gate_summary"] == summary


def test_a_candidate_whose_scoring_fails_is_refused(candidates: list[Path], tmp_path: Path, small_suite: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    registry = ModelRegistry(tmp_path)
    good, bad = (registry.register(c) for c in candidates)
    runner = CliRunner()
    out = runner.invoke(app, ["model", "promote", bad.version])
    assert out.exit_code == 1 and "evaluation gate failed" in out.output
    tags = registry.get(NAME, bad.version).tags
    assert tags["careloom.gate"] == "failed"
    counts = _counts(tags["careloom.gate_summary"])
    assert counts["failed"] > 0 and counts["scored"] == 0, tags["careloom.gate_summary"]
    assert "refused: the candidate failed to score" in tags["careloom.gate_summary"]
    assert "lace_points" in tags["careloom.gate_summary"]  # the first failure names the feature
    assert registry.by_alias(NAME, CHAMPION) is None
    # The same suite with the sound candidate passes: the refusal was the candidate's.
    result = cli.model.evaluation_gate(good, registry)
    assert result.passed, result.summary
    assert _counts(result.summary)["scored"] > 0 and "4 cases" in result.summary


def test_a_candidate_that_does_not_verify_fails_the_gate_before_the_suite(candidates: list[Path],
                                                                         tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.register(candidates[0])
    model_file = version.source / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes() + b"replaced")
    result = cli.model.evaluation_gate(version, registry)
    assert not result.passed and "does not verify" in result.summary and "does not match" in result.summary


def test_the_counting_scorer_tells_a_missing_feature_from_a_failure(candidates: list[Path], tmp_path: Path) -> None:
    """Missing features of a stay are reported, not failures; a model that cannot score complete features is."""
    import csv

    from store.sql_records import SqlCareRecordStore

    data = candidates[0].parent / "data"
    with (data / "cohort.csv").open() as handle:
        member_id, encounter_id = next((r["member_id"], r["encounter_id"]) for r in csv.DictReader(handle))
    shutil.copy(data / "records.db", tmp_path / "records.db")
    store = SqlCareRecordStore(tmp_path / "records.db")
    registry = ModelRegistry(tmp_path / "state")
    good, bad = (registry.register(c) for c in candidates)
    try:
        sound, broken = cli.model.candidate_scorer(registry, good), cli.model.candidate_scorer(registry, bad)
        assert sound.score(store, member_id, encounter_id).model is not None
        assert broken.score(store, member_id, encounter_id).model is None
        patient = store.get("Patient", member_id)
        assert patient is not None
        store.put_many([{k: v for k, v in patient.items() if k != "gender"}])
        assert sound.score(store, member_id, encounter_id).model is None
    finally:
        store.close()
    assert sound.counts == {"scored": 1, "missing_feature": 1, "failed": 0, "no_model": 0}
    assert broken.counts == {"scored": 0, "missing_feature": 0, "failed": 1, "no_model": 0}
    assert broken.failure is not None and "lace_points" in broken.failure and member_id not in broken.failure
