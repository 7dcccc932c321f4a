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

    return ModelRegistry(private_state_dir(settings().state_dir))


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
        f"{version.digest[:16]}…, in {registry.path}")


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """The registered versions with their aliases (champion, challenger) and digests."""
    _quiet_mlflow()
    registry = _registry()
    rows = [_version_row(v) for name in registry.names() for v in registry.versions(name)]
    if as_json:
        print_json({"registry": str(registry.path), "versions": rows})
        return
    if not rows:
        say(f"no registered model versions in {registry.path}; `careloom model register DIR` adds one")
        return
    table = Table(title=f"model registry {registry.path}")
    for column in ("model", "version", "aliases", "label", "model sha256", "gate", "AUC (LACE)", "registered"):
        table.add_column(column)
    for r in rows:
        auc = f"{r['validation_auc']} ({r['lace_auc']})" if r["validation_auc"] else "not validated"
        table.add_row(*(plain(v) for v in (r["name"], r["version"], ", ".join(r["aliases"]) or "-", r["label"],
                                           r["model_sha256"][:16], r["gate"] or "-", auc, r["created_at"] or "")))
    console.print(table)


def evaluation_gate(_candidate: Any) -> Any:  # noqa: ANN401 - RegisteredVersion -> GateResult
    """The evaluation gate, as ``careloom eval run --planner offline`` runs it: the shipped scenario suite on a
    fresh stack of its own; passes when every safety gate passes, no case errored and every case was judged.

    The candidate is not the scorer inside the suite's stack (the suite builds its own workers under a temporary
    state folder, with no registry): the gate is the suite's gate at promotion time. The learned score does not
    enter routing (LACE's rules route), so no suite figure depends on the candidate."""
    from cli.common import run
    from cli.eval import SHIPPED_SUITE
    from evaluation.metrics import compute
    from evaluation.runner import run_suite
    from evaluation.scenarios import load_suite
    from learning.registry import GateResult

    loaded = load_suite(SHIPPED_SUITE)
    result = run(run_suite(_settings(), loaded, "offline"))
    metrics = compute(result.results, skipped=len(loaded.skipped), not_applicable=len(result.not_applicable),
                      allow_skipped=False)
    failed = [g.metric for g in metrics.gates if not g.passed]
    passed = metrics.passed and not metrics.infrastructure_errors
    summary = (f"suite {loaded.digest[:12]}: {len(result.results)} cases, gates "
               f"{len(metrics.gates) - len(failed)}/{len(metrics.gates)} passed"
               + (f", failed: {', '.join(failed)}" if failed else "")
               + (f", {metrics.infrastructure_errors} case(s) not judged" if metrics.infrastructure_errors else ""))
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
    """Make a version the champion after the evaluation gate passes (refused otherwise), or the challenger with
    --shadow. Workers load the champion and challenger when they start."""
    from learning.model import MODEL_NAME

    _quiet_mlflow()
    registry = _registry()
    if not shadow:
        err_console.print("running the evaluation gate (the scenario suite, offline planner) before promoting…")
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


@app.command()
def compare(
    data_path: Annotated[Path | None, typer.Option("--data", help="Data folder with a dataset.csv (from `model "
                                                                  "data`), ideally one neither model trained "
                                                                  "on.")] = None,
    name: Annotated[str | None, typer.Option(help="Registered model name; default the readmission model.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Champion vs challenger (and LACE) on one data table: AUC and Brier score of each on every stay of the
    table. The production form, on the shadow scores recorded in run histories and the outcomes that follow,
    is not built yet."""
    from learning.model import MODEL_NAME

    _quiet_mlflow()
    registry = _registry()
    try:
        figures = compare_on_table(registry, name or MODEL_NAME, _data_dir(data_path))
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
            "note": "on every stay of the given table; the production form on recorded shadow scores is not built"}
