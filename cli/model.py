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

from cli.output import console, fail, plain, print_json, say
from runtime.errors import CareloomError

__all__ = ["app"]

app = typer.Typer(help="The learned readmission-risk model: training data, training, validation.",
                  no_args_is_help=True)

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
