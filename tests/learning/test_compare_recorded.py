"""``careloom model compare``: the champion's and the challenger's recorded scores (RiskAssessments written by the
risk activity) paired per stay and per version pair, with the outcomes that followed; pending windows; no scores."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from temporalio.testing import ActivityEnvironment

from guardrails.approval_check import ApprovalCheck
from learning.compare import NO_SHADOW_SCORES, CompareError, compare_recorded
from learning.features import readmitted_within_30_days, stay_features
from learning.model import load_model
from learning.registry import GateResult, ModelRegistry
from learning.serving import scorer_from_registry
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tests.cli import careloom, clean_env
from tests.learning.test_registry import trained_artifacts
from tools.activities import CareTools
from tools.clinical import parse_instant
from tools.risk import RiskInput, risk_assessments, score_readmission_risk

NAME = "readmission-30d-hgb"


@dataclass
class Recorded:
    store: SqlCareRecordStore
    database: Path
    artifacts: list[Path]
    first: list[tuple[str, str]]  # scored by champion v1 + challenger v2 (through the risk activity)
    second: list[tuple[str, str]]  # scored by champion v2 + challenger v1 (RegistryScorer + risk_assessments)
    fresh: tuple[str, str]  # a stay discharged 3 days ago: its window is open
    readmitted_later: tuple[str, str]  # a stay whose readmission was recorded after it was scored
    since: datetime
    until: datetime


def _promoted(state: Path, artifacts: list[Path], champion: str, challenger: str) -> ModelRegistry:
    registry = ModelRegistry(state)
    if not registry.exists():
        for artifact in artifacts:
            registry.register(artifact)
    registry.promote(NAME, champion, gate=lambda _: GateResult(True, "test"))
    registry.promote(NAME, challenger, shadow=True)
    return registry


def _fresh_stay(store: SqlCareRecordStore, member_id: str, encounter_id: str, now: datetime) -> str:
    """A copy of the member's index stay, moved so that it was discharged 3 days before ``now``."""
    index = store.get("Encounter", encounter_id)
    assert index is not None
    start, end = (parse_instant(index["period"][k]) for k in ("start", "end"))
    assert start is not None and end is not None
    shift = now - timedelta(days=3) - end
    fresh = {**index, "id": f"{encounter_id}-fresh",
             "period": {"start": (start + shift).isoformat(), "end": (end + shift).isoformat()}}
    store.put_many([fresh])
    return fresh["id"]


def _readmission(member_id: str, encounter: dict, days: int) -> dict:
    discharged = parse_instant(encounter["period"]["end"])
    assert discharged is not None
    return {"resourceType": "Encounter", "id": f"{encounter['id']}-readmit", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{member_id}"},
            "period": {"start": (discharged + timedelta(days=days)).isoformat(),
                       "end": (discharged + timedelta(days=days + 2)).isoformat()}}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    root = tmp_path_factory.mktemp("compare")
    artifacts = trained_artifacts(root, ("cmp-1", "cmp-2"))
    database = root / "state" / "records.db"
    database.parent.mkdir()
    shutil.copy(root / "data" / "records.db", database)
    with (root / "data" / "cohort.csv").open() as handle:
        stays = [(r["member_id"], r["encounter_id"]) for r in csv.DictReader(handle)]
    store = SqlCareRecordStore(database)
    since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    # A stay that was not readmitted (at scoring time), to be readmitted after it was scored.
    later = next(s for s in stays[:150] if not readmitted_within_30_days(store, *s))
    fresh = (stays[0][0], _fresh_stay(store, stays[0][0], stays[0][1], datetime.now(UTC)))

    # Champion v1, challenger v2: the risk activity as a worker runs it (activity context, records written).
    registry_state = root / "registry"
    _promoted(registry_state, artifacts, "1", "2")
    tools = CareTools(store, Settings(state_dir=registry_state, _env_file=None), ApprovalCheck(()),
                      scorer=scorer_from_registry(registry_state))
    activity = ActivityEnvironment()
    first = [*stays[:150], fresh]
    for member_id, encounter_id in first:
        result = activity.run(tools.score_readmission_risk, RiskInput(
            length_of_stay_days=3, acute_admission=True, condition_codes=[], ed_visits_6mo=0,
            member_id=member_id, encounter_id=encounter_id))
        assert result.model is not None and result.shadow is not None, result.model_reason

    # Later, v2 promoted and v1 shadowing it: other stays scored by the serving scorer, records as the activity's.
    scorer = scorer_from_registry(_promoted(registry_state, artifacts, "2", "1").state_dir)
    second = stays[150:]
    at = datetime.now(UTC).replace(microsecond=0)
    for member_id, encounter_id in second:
        outcome = scorer.score(store, member_id, encounter_id)
        assert outcome.model is not None and outcome.model.version == "2" and outcome.shadow is not None
        lace = score_readmission_risk(RiskInput(length_of_stay_days=3, acute_admission=True, condition_codes=[],
                                                ed_visits_6mo=0))
        store.put_many(risk_assessments(lace.model_copy(update={"model": outcome.model, "shadow": outcome.shadow}),
                                        member_id, encounter_id, at))
    # The outcome arrives after the score: a readmission 12 days after the discharge.
    store.put_many([_readmission(later[0], store.get("Encounter", later[1]) or {}, 12)])
    until = datetime.now(UTC) + timedelta(seconds=2)
    yield Recorded(store, database, artifacts, first, second, fresh, later, since, until)
    store.close()


def _expected(recorded: Recorded, stays: list[tuple[str, str]], artifact: Path) -> tuple[float, float, int]:
    model = load_model(artifact)
    labels = [int(readmitted_within_30_days(recorded.store, *s)) for s in stays]
    scores = [model.score(stay_features(recorded.store, *s)) for s in stays]
    return roc_auc_score(labels, scores), brier_score_loss(labels, scores), sum(labels)


def test_the_champion_and_the_challenger_are_paired_per_version_with_outcomes(recorded: Recorded) -> None:
    now = datetime.now(UTC)
    figures = compare_recorded(recorded.store, NAME, recorded.since, recorded.until, now)
    assert figures.message is None
    assert figures.scores_read == 2 * (len(recorded.first) + len(recorded.second))
    assert [(c.champion_version, c.challenger_version, c.stays) for c in figures.comparisons] == [
        ("1", "2", len(recorded.first)), ("2", "1", len(recorded.second))]
    first = figures.comparisons[0]
    assert first.pending == 1 and first.no_outcome == 0  # the stay discharged 3 days ago
    labelled = [s for s in recorded.first if s != recorded.fresh]
    roles = {m.role: m for m in first.models}
    for role, artifact in (("champion", recorded.artifacts[0]), ("challenger", recorded.artifacts[1])):
        auc, brier, readmissions = _expected(recorded, labelled, artifact)
        model = roles[role]
        assert (model.stays_scored, model.stays_with_outcome, model.readmissions) == (
            len(recorded.first), len(labelled), readmissions)
        assert model.auc == pytest.approx(auc, abs=1e-3) and model.brier == pytest.approx(brier, abs=1e-3)
        assert model.mean_score is not None and 0.0 < model.mean_score < 1.0
    assert roles["champion"].version == "1" and roles["challenger"].version == "2"
    assert first.auc_difference == pytest.approx(roles["challenger"].auc - roles["champion"].auc, abs=1e-3)
    lace_labels = [int(readmitted_within_30_days(recorded.store, *s)) for s in labelled]
    lace = [stay_features(recorded.store, *s)["lace_total"] for s in labelled]
    assert roles["LACE"].auc == pytest.approx(roc_auc_score(lace_labels, lace), abs=1e-3)
    assert roles["LACE"].brier is None and first.lace_unscored == 0
    # The readmission recorded after the score counts: it is among the readmissions of the labelled stays.
    assert recorded.readmitted_later in labelled
    assert readmitted_within_30_days(recorded.store, *recorded.readmitted_later)
    second = {m.role: m for m in figures.comparisons[1].models}
    assert second["champion"].version == "2" and second["challenger"].version == "1"
    auc, _, _ = _expected(recorded, recorded.second, recorded.artifacts[1])
    assert second["champion"].auc == pytest.approx(auc, abs=1e-3)


def test_stays_are_pending_until_their_window_closes(recorded: Recorded) -> None:
    """At a ``now`` inside every window, nothing is labelled; 30 days after the fresh stay, it is."""
    discharges = [parse_instant((recorded.store.get("Encounter", e) or {})["period"]["end"])
                  for _, e in recorded.first]
    earliest = min(d for d in discharges if d is not None)
    early = compare_recorded(recorded.store, NAME, recorded.since, recorded.until, earliest + timedelta(days=1))
    first = early.comparisons[0]
    assert first.pending == len(recorded.first)
    assert all(m.stays_with_outcome == 0 and m.auc is None and m.brier is None for m in first.models[:2])
    assert first.models[0].stays_scored == len(recorded.first) and first.auc_difference is None
    later = compare_recorded(recorded.store, NAME, recorded.since, recorded.until,
                             datetime.now(UTC) + timedelta(days=28))
    assert later.comparisons[0].pending == 0
    assert later.comparisons[0].models[0].stays_with_outcome == len(recorded.first)


def test_no_shadow_scores_says_how_to_get_them(recorded: Recorded) -> None:
    before = compare_recorded(recorded.store, NAME, recorded.since - timedelta(days=30),
                              recorded.since - timedelta(days=1), datetime.now(UTC))
    assert before.comparisons == [] and before.scores_read == 0
    assert before.message is not None and "no scores of" in before.message and NO_SHADOW_SCORES in before.message
    assert "careloom model promote V --shadow" in before.message
    other = compare_recorded(recorded.store, "another-model", recorded.since, recorded.until, datetime.now(UTC))
    assert other.comparisons == [] and other.message is not None
    with pytest.raises(CompareError, match="before it starts"):
        compare_recorded(recorded.store, NAME, recorded.until, recorded.since, datetime.now(UTC))


def test_champion_scores_alone_are_not_a_comparison(tmp_path: Path, recorded: Recorded) -> None:
    own = ModelRegistry(tmp_path / "champion-only")
    own.register(recorded.artifacts[0])
    own.promote(NAME, "1", gate=lambda _: GateResult(True, "test"))
    member_id, encounter_id = recorded.first[0]
    outcome = scorer_from_registry(own.state_dir).score(recorded.store, member_id, encounter_id)
    assert outcome.model is not None and outcome.shadow is None
    lace = score_readmission_risk(RiskInput(length_of_stay_days=3, acute_admission=True, condition_codes=[],
                                            ed_visits_6mo=0))
    at = datetime.now(UTC).replace(microsecond=0)
    store = SqlCareRecordStore(tmp_path / "records.db")
    try:
        store.put_many(risk_assessments(lace.model_copy(update={"model": outcome.model}), member_id,
                                        encounter_id, at))
        figures = compare_recorded(store, NAME, at - timedelta(minutes=1), at + timedelta(minutes=1),
                                   datetime.now(UTC))
    finally:
        store.close()
    assert figures.comparisons == [] and figures.scores_read == 1
    assert figures.unpaired == {"champion_only": 1, "challenger_only": 0}
    assert figures.message is not None and "none of a challenger" in figures.message


def test_the_cli_compares_recorded_scores(recorded: Recorded, tmp_path: Path) -> None:
    registry_state = recorded.database.parent.parent / "registry"  # the registry whose models scored the runs
    env = clean_env(CARELOOM_STATE_DIR=str(registry_state),
                    CARELOOM_DATABASE_URL=f"sqlite:///{recorded.database.resolve()}")
    since = recorded.since.isoformat()
    out = careloom(env, "model", "compare", "--since", since, "--json")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert [(c["champion_version"], c["challenger_version"]) for c in figures["comparisons"]] == [("1", "2"),
                                                                                                 ("2", "1")]
    assert figures["comparisons"][0]["pending"] == 1
    assert {m["role"] for m in figures["comparisons"][0]["models"]} == {"champion", "challenger", "LACE"}
    table = careloom(env, "model", "compare", "--since", since)
    assert table.returncode == 0, table.stderr
    assert "champion v1 vs challenger v2" in table.stdout and "AUC challenger − champion" in table.stdout
    assert recorded.first[0][0] not in table.stdout + table.stderr  # counts and scores, no member
    none = careloom(env, "model", "compare", "--since", "2020-01-01", "--until", "2020-01-31")
    assert none.returncode == 1 and "--shadow" in none.stderr and "no scores" in none.stderr
    bad = careloom(env, "model", "compare", "--since", "last week")
    assert bad.returncode == 1 and "--since" in bad.stderr and "YYYY-MM-DD" in bad.stderr
    # Another registry (another deployment's models): none of the records is its models', so none is compared.
    other = careloom({**env, "CARELOOM_STATE_DIR": str(tmp_path / "state")}, "model", "compare", "--since", since)
    assert other.returncode == 1 and "digest is not the registry's" in other.stderr


def test_records_whose_digest_is_not_the_registrys_are_left_out(recorded: Recorded) -> None:
    """An imported or hand-made RiskAssessment claiming careloom's model system cannot skew the comparison: with
    the registry's digests, records of a version whose digest is not the registered one are counted and left out."""
    now = datetime.now(UTC)
    everything = compare_recorded(recorded.store, NAME, recorded.since, recorded.until, now)
    digests = {c.champion_version: next(m.digest for m in c.models if m.role == "champion")
               for c in everything.comparisons}
    assert set(digests) == {"1", "2"}
    trusted = compare_recorded(recorded.store, NAME, recorded.since, recorded.until, now, digests=digests)
    assert trusted.not_from_registry == 0 and trusted.scores_read == everything.scores_read
    forged = compare_recorded(recorded.store, NAME, recorded.since, recorded.until, now,
                              digests={**digests, "2": "0" * 64})
    assert forged.not_from_registry == len(recorded.first) + len(recorded.second)  # every version-2 record
    assert forged.comparisons == [] and forged.message is not None
