"""``careloom model data|train|validate``: the learned readmission-risk model's training data, training and
validation (issue 26, first part; docs/learned-risk-model.md).

``data --members N --seed S --out PATH`` simulates members with index stays and 30-day readmissions into a care
records database (PATH a folder, records in ``records.db`` inside it, or a ``.db`` file) and builds the training
table from those records at each discharge date. ``train --data PATH --out DIR`` fits the gradient-boosting
model on the stratified 70 % split and writes the artifact folder (``model.joblib`` + ``manifest.json``).
``validate --model DIR --data PATH`` compares the model with LACE on the held-out 30 % (AUC with bootstrap
intervals, Brier, calibration, subgroup figures) and writes the model card. Defaults live under the state folder
(``<state_dir>/learning``); nothing is written into the repository. A bad input (a model file whose digest is not
its manifest's, a table that is not the one trained on, a missing feature) exits 1 naming the problem.

``register|list|promote|compare`` (issue 26, second part): the MLflow registry; ``promote V`` makes a version the
champion only after the evaluation gate passes WITH it (the scenario suite on a fresh stack whose workers serve
the candidate as the champion: every safety gate passes, the candidate scores stays and never fails);
``promote V --shadow`` makes it the challenger. ``compare`` pairs the champion's and the challenger's scores
recorded by runs (FHIR RiskAssessments in the records store) with the outcomes that followed
(:mod:`learning.compare`); ``compare --data`` compares them on a data table instead.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli import calibration as calibration_cli
from cli.output import console, err_console, fail, plain, print_json, say
from runtime.errors import CareloomError

__all__ = ["app"]

app = typer.Typer(help="The learned readmission-risk model (training data, training, validation, registry, "
                       "promotion, compare) and the routing confidence's calibrators (`calibrate`).",
                  no_args_is_help=True)
app.add_typer(calibration_cli.app, name="calibrate")

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _learning_dir() -> Path:
    from cli.common import settings
    from runtime.state_dir import private_state_dir

    return private_state_dir(settings().state_dir) / "learning"


def _data_dir(given: Path | None) -> Path:
    return given if given is not None else _learning_dir() / "data"


@app.command()
def data(
    members: Annotated[int, typer.Option(min=10, help="Members to simulate.")] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of the simulation (same seed, same data).")] = 7,
    out: Annotated[Path | None, typer.Option(help="Folder (records in records.db) or a records .db file; "
                                                  "default <state_dir>/learning/data.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Simulate members with readmissions into a records database and build the training table."""
    from learning.dataset import build_dataset, dataset_digest, generate, locate

    where = locate(_data_dir(out))
    try:
        started = time.perf_counter()
        generate(where, members, seed)
        table, rows, skipped = build_dataset(where)
    except CareloomError as err:
        fail(str(err))
        return
    result = {"records": str(where.records), "cohort": str(where.cohort), "dataset": str(table),
              "members": members, "seed": seed, "rows": rows, "skipped_missing_feature": skipped,
              "dataset_sha256": dataset_digest(table), "seconds": round(time.perf_counter() - started, 2)}
    if as_json:
        print_json(result)
        return
    say(f"{rows} index stays ({skipped} skipped for a missing feature) from {members} simulated members "
        f"(seed {seed}) in {result['seconds']} s")
    say(f"records: {where.records}\ntable:   {table} (sha256 {result['dataset_sha256']})")


@app.command()
def train(
    data_path: Annotated[Path | None, typer.Option("--data", help="Data folder (from `model data`).")] = None,
    out: Annotated[Path | None, typer.Option(help="Artifact folder; default <data>/model.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split and the estimator.")] = 7,
    version: Annotated[str | None, typer.Option(help="Version label; default the UTC time.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Fit the gradient-boosting model on the training split; write model.joblib and manifest.json."""
    from learning.dataset import locate
    from learning.model import train as train_model

    folder = locate(_data_dir(data_path)).folder
    target = out if out is not None else folder / "model"
    try:
        manifest = train_model(folder, target, seed=seed, version=version)
    except CareloomError as err:
        fail(str(err))
        return
    if as_json:
        print_json({"artifact": str(target), "manifest": manifest})
        return
    table = Table(title=f"{manifest['name']} {manifest['version']}")
    table.add_column("fact")
    table.add_column("value")
    split = manifest["split"]
    for fact, value in (("artifact", target), ("training rows / held out", f"{split['train_rows']} / "
                                                                        f"{split['held_out_rows']}"),
                        ("readmissions (all rows)", manifest["training_data"]["readmissions"]),
                        ("train seconds", manifest["metrics"]["train"]["train_seconds"]),
                        ("train AUC (in-sample)", f"{manifest['metrics']['train']['auc']:.3f}"),
                        ("data sha256", manifest["training_data"]["sha256"]),
                        ("model sha256", manifest["model_file"]["sha256"]),
                        ("git", manifest["code_version"].get("git_sha") or "unknown")):
        table.add_row(plain(fact), plain(value))
    console.print(table)


def _ci(pair: list[float]) -> str:
    return f"{pair[0]:.3f}–{pair[1]:.3f}"


def _num(value: Any) -> str:  # noqa: ANN401
    return "n/a" if value is None else f"{value:.3f}"


@app.command()
def validate(
    model: Annotated[Path | None, typer.Option(help="Artifact folder; default <data>/model.")] = None,
    data_path: Annotated[Path | None, typer.Option("--data", help="Data folder the model was trained on.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Model vs LACE on the held-out split (AUC with 95 % CIs, Brier, calibration, subgroups); the model card."""
    from learning.dataset import locate
    from learning.validation import validate as run_validation

    folder = locate(_data_dir(data_path)).folder
    artifact = model if model is not None else folder / "model"
    try:
        figures = run_validation(artifact, folder)
    except CareloomError as err:
        fail(str(err))
        return
    if as_json:
        print_json(figures)
        return
    held = figures["held_out"]
    table = Table(title=f"{figures['model']['name']} {figures['model']['version']} vs LACE: {held['stays']} "
                        f"held-out stays, {held['readmissions']} readmissions")
    for column in ("score", "AUC", "95 % CI", "Brier"):
        table.add_column(column)
    for name, key in (("model", "model"), ("LACE", "lace")):
        table.add_row(plain(name), plain(f"{figures['auc'][key]:.3f}"), plain(_ci(figures["auc_ci95"][key])),
                      plain(f"{figures['brier'][key]:.4f}"))
    console.print(table)
    groups = Table(title="subgroups (held out)")
    for column in ("attribute", "group", "n", "readmissions", "model AUC", "LACE AUC", "selection rate"):
        groups.add_column(column)
    for facts in figures["subgroups"].values():
        for g in facts["groups"]:
            groups.add_row(*(plain(v) for v in (facts["label"], g["group"], g["n"], g["readmissions"],
                                                _num(g["model_auc"]), _num(g["lace_auc"]),
                                                _num(g["selection_rate"]))))
    console.print(groups)
    gap = figures["largest_subgroup_auc_gap"]
    say(f"AUC difference model − LACE, 95 % CI: {_ci(figures['auc_ci95']['difference'])}; largest subgroup "
        f"AUC gap {_num(gap['gap'])} ({gap['attribute']}); model card in {artifact}")


# --- the registry (issue 26, second part) -----------------------------------------------------------------------

def _registry() -> Any:  # noqa: ANN401 - learning.registry.ModelRegistry, imported late (MLflow is slow to load)
    from cli.common import settings
    from learning.registry import ModelRegistry
    from runtime.state_dir import private_state_dir

    config = settings()
    private_state_dir(config.state_dir)
    return ModelRegistry.from_settings(config)  # CARELOOM_MODEL_REGISTRY_URI, else the SQLite file there


def _quiet_mlflow() -> None:
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _version_row(v: Any) -> dict[str, Any]:  # noqa: ANN401
    return {"name": v.name, "version": v.version, "aliases": list(v.aliases), "label": v.label,
            "model_sha256": v.digest, "manifest_sha256": v.manifest_digest, "source": str(v.source),
            "created_at": v.created_at.isoformat() if v.created_at else None,
            "gate": v.tags.get("careloom.gate"), "validation_auc": v.tags.get("careloom.validation.auc"),
            "lace_auc": v.tags.get("careloom.validation.lace_auc")}


@app.command()
def register(
    artifact: Annotated[Path, typer.Argument(help="Artifact folder (model.joblib + manifest.json).")],
    as_json: JsonFlag = False,
) -> None:
    """Register an artifact as a new version in the model registry (MLflow, <state_dir>/mlflow.db): verified,
    copied into the registry's folder, its digests and manifest facts as tags."""
    _quiet_mlflow()
    registry = _registry()
    try:
        version = registry.register(artifact)
    except CareloomError as err:
        fail(str(err))
        return
    if as_json:
        print_json(_version_row(version))
        return
    say(f"registered {version.name} version {version.version} ({version.label}), model sha256 "
        f"{version.digest[:16]}…, in {registry.location}")


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """The registered versions with their aliases (champion, challenger) and digests."""
    _quiet_mlflow()
    registry = _registry()
    rows = [_version_row(v) for name in registry.names() for v in registry.versions(name)]
    if as_json:
        print_json({"registry": str(registry.location), "versions": rows})
        return
    if not rows:
        say(f"no registered model versions in {registry.location}; `careloom model register DIR` adds one")
        return
    table = Table(title=f"model registry {registry.location}")
    for column in ("model", "version", "aliases", "label", "model sha256", "gate", "AUC (LACE)", "registered"):
        table.add_column(column)
    for r in rows:
        auc = f"{r['validation_auc']} ({r['lace_auc']})" if r["validation_auc"] else "not validated"
        table.add_row(*(plain(v) for v in (r["name"], r["version"], ", ".join(r["aliases"]) or "-", r["label"],
                                           r["model_sha256"][:16], r["gate"] or "-", auc, r["created_at"] or "")))
    console.print(table)


class CandidateScorer:
    """The candidate served as the champion in the gate's stack (the production scorer,
    :class:`learning.serving.RegistryScorer`, with the candidate and no challenger), counting what each stay's
    scoring came to: ``scored``; ``missing_feature`` (the stay's records lack a feature the model needs: reported,
    never imputed, not the candidate's failure); ``failed`` (the scorer raised, or the stay's features were
    complete and the candidate still gave no score, e.g. a model whose features are not the ones served; or it
    scored without an explanation: a nurse would see a number without its reasons);
    ``no_model`` (no candidate to score with). Thread-safe: the worker's activity threads share it. Reasons kept
    name models and features, never a member or a stay."""

    def __init__(self, inner: Any) -> None:  # noqa: ANN401 - learning.serving.RegistryScorer
        import threading

        self.inner = inner
        self.counts = {"scored": 0, "missing_feature": 0, "failed": 0, "no_model": 0}
        self.failure: str | None = None
        self._lock = threading.Lock()

    def _count(self, outcome: str, reason: str | None = None) -> None:
        with self._lock:
            self.counts[outcome] += 1
            if outcome == "failed" and self.failure is None:
                self.failure = reason

    def score(self, store: Any, member_id: str, encounter_id: str) -> Any:  # noqa: ANN401 - ModelOutcome
        try:
            outcome = self.inner.score(store, member_id, encounter_id)
        except Exception as err:
            self._count("failed", f"the scorer raised {err.__class__.__name__}")
            raise  # the risk activity keeps LACE and says so
        if outcome.model is not None and outcome.model.explanation_reason:
            # It scores but cannot be explained: the nurse would see a number without its reasons.
            self._count("failed", f"the score could not be explained ({outcome.model.explanation_reason})")
        elif outcome.model is not None:
            self._count("scored")
        elif self.inner.champion is None:
            self._count("no_model")
        else:
            self._count(self._why_unscored(store, member_id, encounter_id), outcome.model_reason)
        return outcome

    @staticmethod
    def _why_unscored(store: Any, member_id: str, encounter_id: str) -> str:  # noqa: ANN401
        from learning.features import MissingFeature, stay_features

        try:
            stay_features(store, member_id, encounter_id)
        except MissingFeature:
            return "missing_feature"
        except Exception:  # noqa: BLE001 - features that cannot be read are a failure of the scoring path
            return "failed"
        return "failed"  # complete features, and still no score: the candidate failed

    def words(self) -> str:
        c = self.counts
        return (f"{c['scored']} stay(s) scored, {c['missing_feature']} missing a feature, {c['failed']} failed, "
                f"{c['no_model']} without a model" + (f" (first failure: {self.failure})" if self.failure else ""))


def candidate_scorer(registry: Any, candidate: Any) -> CandidateScorer:  # noqa: ANN401
    """The candidate verified against the registry (:meth:`ModelRegistry.verify`: a mismatch raises) and served
    as the champion, counted."""
    from learning.registry import CHAMPION
    from learning.serving import RegistryScorer, served_model

    served = served_model(candidate, registry.verify(candidate), CHAMPION)  # as a worker serves it: explained
    return CandidateScorer(RegistryScorer(served, None, None, "the evaluation gate serves the candidate alone"))


def evaluation_gate(candidate: Any, registry: Any = None) -> Any:  # noqa: ANN401 - RegisteredVersion -> GateResult
    """The evaluation gate, as ``careloom eval run --planner offline`` runs it, WITH the candidate: the shipped
    scenario suite on a fresh stack of its own whose workers serve the candidate (verified against ``registry``,
    default the configured one) as the champion in the risk step. Passes when every safety gate passes, no case
    errored, every case was judged, the candidate scored at least one stay and it never failed (raised, or gave
    no score for a stay whose features were complete). A stay missing a feature is reported, not a failure.

    ``candidate`` None runs the suite alone (no learned model: LACE), a check of the suite itself; ``promote``
    always gives the version it promotes."""
    from cli.eval import calibration_for, suite_gate
    from learning.model import ModelIntegrityError
    from learning.registry import GateResult

    scorer = None
    if candidate is not None:
        try:
            scorer = candidate_scorer(registry if registry is not None else _registry(), candidate)
        except ModelIntegrityError as err:
            return GateResult(passed=False, summary=f"the candidate does not verify: {err}")
        except Exception as err:  # noqa: BLE001 - a copy that will not load fails the gate, saying why
            return GateResult(passed=False, summary=f"the candidate does not load ({err.__class__.__name__}: "
                                                    f"{err}); retrain and register it again")
    # As production runs: with the confidence calibrator the workers apply, if one is installed.
    passed, summary = suite_gate(scorer=scorer, calibration=calibration_for("installed", _settings().state_dir))
    if scorer is None:
        return GateResult(passed=passed, summary=summary + "; no candidate (the suite alone)")
    summary += f"; candidate {candidate.name} version {candidate.version}: {scorer.words()}"
    if scorer.counts["scored"] == 0:
        summary += "; refused: the candidate scored no stay"
    if scorer.counts["failed"]:
        summary += "; refused: the candidate failed to score"
    passed = passed and scorer.counts["scored"] > 0 and scorer.counts["failed"] == 0
    return GateResult(passed=passed, summary=summary)


def _settings() -> Any:  # noqa: ANN401
    from cli.common import settings

    return settings()


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Registry version number (`careloom model list`).")],
    shadow: Annotated[bool, typer.Option("--shadow", help="Make it the challenger (shadow mode: scores beside "
                                                          "the champion in every run, affecting nothing); "
                                                          "no gate.")] = False,
    name: Annotated[str | None, typer.Option(help="Registered model name; default the readmission model.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Make a version the champion after the evaluation gate passes with it (the scenario suite with the candidate
    scoring as the champion; refused otherwise), or the challenger with --shadow. Workers load the champion and
    challenger when they start."""
    from learning.model import MODEL_NAME

    _quiet_mlflow()
    registry = _registry()
    if not shadow:
        err_console.print("running the evaluation gate (the scenario suite, offline planner, the candidate scoring "
                          "every stay) before promoting…")
    try:
        promoted, gate = registry.promote(name or MODEL_NAME, version, gate=evaluation_gate, shadow=shadow)
    except CareloomError as err:
        fail(str(err))
        return
    if as_json:
        print_json({**_version_row(promoted), "gate_passed": gate.passed if gate else None,
                    "gate_summary": gate.summary if gate else None})
        return
    role = "challenger (shadow)" if shadow else "champion"
    say(f"{promoted.name} version {promoted.version} is now the {role}"
        + (f"; gate passed: {gate.summary}" if gate else "") + "; restart the workers to serve it")


def _when(value: str | None, option: str, *, end_of_day: bool = False) -> Any:  # noqa: ANN401 - datetime | None
    """An ISO date or date-time option as an aware UTC time (a date alone: its midnight, or the next midnight for
    an inclusive end); a bad value exits 1 naming the option and the form."""
    from datetime import UTC, date, datetime, timedelta

    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end_of_day else 0)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} {value!r} is not an ISO date or time: give YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]")
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@app.command()
def compare(
    since: Annotated[str | None, typer.Option(help="Scores recorded from this date or time (ISO, UTC unless "
                                                    "it names a zone); default a year before now.")] = None,
    until: Annotated[str | None, typer.Option(help="Scores recorded before this time, or through this date "
                                                    "(ISO); default now.")] = None,
    data_path: Annotated[Path | None, typer.Option("--data", help="Instead: compare on a data folder's "
                                                                  "dataset.csv (from `model data`), ideally one "
                                                                  "neither model trained on.")] = None,
    name: Annotated[str | None, typer.Option(help="Registered model name; default the readmission model.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Champion vs challenger (and LACE) on the scores recorded in runs (shadow mode) and the outcomes that
    followed: per (champion version, challenger version), the stays both scored, those whose 30-day window has
    closed with their readmission outcome, AUC, Brier and mean score; stays still in their window are pending.
    With --data, on every stay of one data table instead."""
    from learning.model import MODEL_NAME

    if data_path is not None:
        _compare_table(name or MODEL_NAME, data_path, as_json)
        return
    _compare_recorded(name or MODEL_NAME, _when(since, "--since"), _when(until, "--until", end_of_day=True),
                      as_json)


def _compare_recorded(name: str, since: Any, until: Any, as_json: bool) -> None:  # noqa: ANN401
    from datetime import UTC, datetime

    from learning.compare import compare_recorded, default_window
    from store.connect import configured_database
    from store.sql_records import SqlCareRecordStore

    now = datetime.now(UTC).replace(microsecond=0)
    start, end = default_window(now)
    store = SqlCareRecordStore(configured_database(_settings()))
    try:
        digests = {v.version: v.digest for v in _registry().versions(name)}  # only the registry's own models
        figures = compare_recorded(store, name, since or start, until or end, now, digests=digests)
    except CareloomError as err:
        fail(str(err))
        return
    if figures.message:
        fail(figures.message)
        return
    if as_json:
        print_json(figures.as_dict())
        return
    for pair in figures.comparisons:
        table = Table(title=f"{name}: champion v{pair.champion_version} vs challenger v{pair.challenger_version} "
                            f"on {pair.stays} stays scored by both ({pair.pending} pending, "
                            f"{pair.no_outcome} without an outcome)")
        for column in ("score", "version", "stays scored", "with outcome", "readmissions", "AUC", "Brier",
                       "mean score"):
            table.add_column(column)
        for m in pair.models:
            table.add_row(*(plain(v) for v in (m.role, m.version or "-", m.stays_scored, m.stays_with_outcome,
                                               m.readmissions, _num(m.auc), _num(m.brier), _num(m.mean_score))))
        console.print(table)
        if pair.auc_difference is not None:
            say(f"AUC challenger − champion: {pair.auc_difference:+.3f} on the same {pair.models[0].readmissions} "
                f"readmission(s) in {pair.models[0].stays_with_outcome} stays")
    say(f"{figures.scores_read} scores of {name} recorded from {figures.since} to {figures.until}; outcomes as of "
        f"{figures.now}; stays scored by one model only: {figures.unpaired['champion_only']} champion, "
        f"{figures.unpaired['challenger_only']} challenger"
        + (f"; left out {figures.not_from_registry} record(s) whose model digest is not the registry's"
           if figures.not_from_registry else ""))


def _compare_table(name: str, data_path: Path, as_json: bool) -> None:
    _quiet_mlflow()
    registry = _registry()
    try:
        figures = compare_on_table(registry, name, _data_dir(data_path))
    except CareloomError as err:
        fail(str(err))
        return
    if as_json:
        print_json(figures)
        return
    table = Table(title=f"{figures['stays']} stays, {figures['readmissions']} readmissions "
                        f"(table sha256 {figures['dataset_sha256'][:12]}…)")
    for column in ("score", "version", "AUC", "Brier"):
        table.add_column(column)
    for row in figures["scores"]:
        table.add_row(*(plain(v) for v in (row["role"], row.get("version") or "-", _num(row["auc"]),
                                           _num(row["brier"]))))
    console.print(table)


def compare_on_table(registry: Any, name: str, data: Path) -> dict[str, Any]:  # noqa: ANN401
    """AUC and Brier of the champion, the challenger (each verified against the registry) and LACE (AUC only:
    LACE is a points score) on every stay of ``data``'s table."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    from learning.dataset import LABEL, load_dataset
    from learning.registry import CHALLENGER, CHAMPION, RegistryError

    frame, digest = load_dataset(data)
    y = frame[LABEL].to_numpy(dtype=int)
    if y.sum() == 0 or y.sum() == len(y):
        raise RegistryError("the table has only one outcome class: AUC is undefined; use a larger table")
    scores: list[dict[str, Any]] = []
    for alias in (CHAMPION, CHALLENGER):
        registered = registry.by_alias(name, alias)
        if registered is None:
            raise RegistryError(f"no {alias} of {name} in the registry: compare needs both (`careloom model "
                                f"promote V` and `promote V --shadow`)")
        p = registry.verify(registered).score_frame(frame)
        scores.append({"role": alias, "version": registered.version, "label": registered.label,
                       "auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p))})
    scores.append({"role": "LACE", "version": None, "auc": float(roc_auc_score(y, frame["lace_total"])),
                   "brier": None})
    return {"dataset_sha256": digest, "stays": len(frame), "readmissions": int(y.sum()), "scores": scores,
            "note": "on every stay of the given table; without --data, `careloom model compare` compares the "
                    "scores recorded in runs with the outcomes that followed"}
