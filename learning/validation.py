"""Validate a trained model on its held-out split against LACE, and write the model card from the figures.

On the held-out stays (the split the manifest records, recomputed from the same table and seed; the table's
sha256 must be the manifest's): AUC of the model and of LACE (the LACE total as the score) with 95 % bootstrap
confidence intervals (and of their difference, on the same resamples), the Brier score of both (LACE turned into
a probability by the logistic fit on the training split the manifest holds), the calibration curve of both
(``sklearn.calibration.calibration_curve``, 10 uniform bins), and subgroup figures with fairlearn's
``MetricFrame`` (AUC, selection rate and count by age band, sex and plan type; selection = the top 20 % of the
training split's scores, the outreach capacity). The largest subgroup AUC gap is the largest difference between
two groups of one attribute. The card (``model_card.md`` and ``model_card.json``) is written from these figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from learning.dataset import LABEL, DatasetError, load_dataset
from learning.model import LoadedModel, load_model, split, write_manifest

__all__ = ["BOOTSTRAP_SAMPLES", "SUBGROUPS", "validate", "write_model_card"]

BOOTSTRAP_SAMPLES = 1000
SELECTED_SHARE = 0.20
SUBGROUPS = {"age_band_label": "age band", "sex": "sex", "plan_type": "plan type"}


def _auc(y: Any, p: Any) -> float:  # noqa: ANN401
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y)) == 2 else math.nan


def _bootstrap(y: Any, model_p: Any, lace: Any, seed: int) -> dict[str, list[float]]:  # noqa: ANN401
    """95 % percentile intervals of AUC (model, LACE, model - LACE) on the same resamples of the held-out set."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = len(y)
    model_aucs, lace_aucs, diffs = [], [], []
    for _ in range(BOOTSTRAP_SAMPLES):
        pick = rng.integers(0, n, n)
        if y[pick].min() == y[pick].max():
            continue
        a, b = roc_auc_score(y[pick], model_p[pick]), roc_auc_score(y[pick], lace[pick])
        model_aucs.append(a)
        lace_aucs.append(b)
        diffs.append(a - b)

    def ci(values: list[float]) -> list[float]:
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]

    return {"model": ci(model_aucs), "lace": ci(lace_aucs), "difference": ci(diffs),
            "resamples": [len(model_aucs)]}


def _curve(y: Any, p: Any) -> list[dict[str, float]]:  # noqa: ANN401
    import numpy as np
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    edges = np.linspace(0, 1, 11)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=10)  # the bins calibration_curve uses
    counts = counts[counts > 0]
    return [{"mean_predicted": float(m), "observed_rate": float(o), "n": int(c)}
            for m, o, c in zip(predicted, observed, counts, strict=True)]


def _subgroups(frame: Any, y: Any, model_p: Any, lace: Any, threshold: float) -> dict[str, Any]:  # noqa: ANN401
    from fairlearn.metrics import MetricFrame, count, selection_rate

    figures: dict[str, Any] = {}
    for column, label in SUBGROUPS.items():
        sensitive = frame[column].astype(str).to_numpy()
        selected = (model_p >= threshold).astype(int)
        by_model = MetricFrame(metrics={"auc": _auc, "count": count}, y_true=y, y_pred=model_p,
                               sensitive_features=sensitive)
        by_selection = MetricFrame(metrics={"selection_rate": selection_rate}, y_true=y, y_pred=selected,
                                   sensitive_features=sensitive)
        by_lace = MetricFrame(metrics={"auc": _auc}, y_true=y, y_pred=lace, sensitive_features=sensitive)
        groups = []
        for group in by_model.by_group.index:
            mask = sensitive == group
            groups.append({
                "group": str(group), "n": int(by_model.by_group.loc[group, "count"]),
                "readmissions": int(y[mask].sum()),
                "model_auc": _finite(by_model.by_group.loc[group, "auc"]),
                "lace_auc": _finite(by_lace.by_group.loc[group, "auc"]),
                "selection_rate": float(by_selection.by_group.loc[group, "selection_rate"]),
                "readmission_rate": float(y[mask].mean()),
            })
        aucs = [g["model_auc"] for g in groups if g["model_auc"] is not None]
        figures[column] = {"label": label, "groups": groups,
                           "model_auc_gap": (max(aucs) - min(aucs)) if len(aucs) >= 2 else None,
                           "selection_rate_gap": float(by_selection.difference()["selection_rate"])}
    return figures


def _finite(value: Any) -> float | None:  # noqa: ANN401
    return None if value is None or math.isnan(float(value)) else float(value)


def validate(model_path: Path, data: Path) -> dict[str, Any]:
    """The validation figures (also written as the model card in the artifact folder)."""
    import numpy as np
    from sklearn.metrics import brier_score_loss

    model: LoadedModel = load_model(model_path)
    manifest = model.manifest
    frame, digest = load_dataset(data)
    if digest != manifest["training_data"]["sha256"]:
        raise DatasetError(f"the table in {data} (sha256 {digest[:16]}…) is not the data model "
                           f"{manifest['name']} {manifest['version']} was trained on (sha256 "
                           f"{manifest['training_data']['sha256'][:16]}…): its held-out split cannot be rebuilt")
    train_rows, test_rows = split(frame, manifest["seed"], manifest["split"]["test_fraction"])
    held_out = frame.iloc[test_rows].reset_index(drop=True)
    y = held_out[LABEL].to_numpy(dtype=int)
    model_p = model.score_frame(held_out)
    lace = held_out["lace_total"].to_numpy(dtype=float)
    fit = manifest["lace_probability"]
    lace_p = 1.0 / (1.0 + np.exp(-(fit["coef"] * lace + fit["intercept"])))
    threshold = float(np.quantile(model.score_frame(frame.iloc[train_rows]), 1 - SELECTED_SHARE))
    subgroups = _subgroups(held_out, y, model_p, lace, threshold)
    largest = max(((c, f["model_auc_gap"]) for c, f in subgroups.items() if f["model_auc_gap"] is not None),
                  key=lambda item: item[1], default=(None, None))
    figures: dict[str, Any] = {
        "model": {"name": manifest["name"], "version": manifest["version"],
                  "model_sha256": manifest["model_file"]["sha256"]},
        "held_out": {"stays": len(y), "readmissions": int(y.sum()), "readmission_rate": float(y.mean())},
        "auc": {"model": _auc(y, model_p), "lace": _auc(y, lace)},
        "auc_ci95": _bootstrap(y, model_p, lace, manifest["seed"]),
        "brier": {"model": float(brier_score_loss(y, model_p)), "lace": float(brier_score_loss(y, lace_p)),
                  "base_rate": float(brier_score_loss(y, np.full(len(y), frame[LABEL].iloc[train_rows].mean())))},
        "calibration": {"bins": 10, "model": _curve(y, model_p), "lace": _curve(y, lace_p)},
        "selection": {"share_of_training_scores": SELECTED_SHARE, "threshold": threshold},
        "subgroups": subgroups,
        "largest_subgroup_auc_gap": {"attribute": largest[0], "gap": largest[1]},
        "train_seconds": manifest["metrics"]["train"]["train_seconds"],
    }
    figures["auc_ci95"]["resamples"] = figures["auc_ci95"]["resamples"][0]
    manifest["metrics"]["validation"] = {
        "auc": figures["auc"]["model"], "auc_ci95": figures["auc_ci95"]["model"],
        "lace_auc": figures["auc"]["lace"], "lace_auc_ci95": figures["auc_ci95"]["lace"],
        "brier": figures["brier"]["model"], "lace_brier": figures["brier"]["lace"],
        "largest_subgroup_auc_gap": figures["largest_subgroup_auc_gap"]}
    write_manifest(model.folder, manifest)
    write_model_card(model.folder, manifest, figures)
    return figures


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def write_model_card(folder: Path, manifest: dict[str, Any], figures: dict[str, Any]) -> None:
    """``model_card.json`` (manifest facts + figures) and ``model_card.md`` (the same, for people)."""
    card = {"manifest": {k: manifest[k] for k in ("name", "version", "created_at", "task", "estimator", "params",
                                                  "features", "label", "seed", "training_data", "split",
                                                  "code_version", "model_file")},
            "validation": figures}
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    auc, ci, brier = figures["auc"], figures["auc_ci95"], figures["brier"]
    code = manifest["code_version"]
    lines = [
        f"# Model card: {manifest['name']} {manifest['version']}", "",
        "## Intended use",
        f"{manifest['task']}. Scores rank recently discharged members for post-discharge outreach beside LACE.",
        "A nurse decides; the score never decides coverage (CMS-4201-F).", "",
        "## Model",
        f"- estimator: {manifest['estimator']} {json.dumps(manifest['params'])}",
        f"- model file sha256: `{manifest['model_file']['sha256']}`",
        f"- code: git {code.get('git_sha') or 'unknown'}{' (work tree had changes)' if code.get('dirty') else ''}",
        f"- features ({len(manifest['features'])}, in input order): {', '.join(manifest['features'])}", "",
        "## Data",
        f"- training table sha256 `{manifest['training_data']['sha256']}`: {manifest['training_data']['rows']} "
        f"index stays, {manifest['training_data']['readmissions']} readmitted within 30 days",
        f"- split: {manifest['split']['method']}, held out {manifest['split']['test_fraction']:.0%}, seed "
        f"{manifest['split']['seed']}: {manifest['split']['train_rows']} train / "
        f"{manifest['split']['held_out_rows']} held out",
        "- features are computed at the discharge date from the records store (nothing dated after it)", "",
        "## Held-out performance against LACE",
        f"Held out: {figures['held_out']['stays']} stays, {figures['held_out']['readmissions']} readmissions "
        f"({figures['held_out']['readmission_rate']:.1%}).", "",
        "| | AUC | 95 % CI (bootstrap) | Brier |", "|---|---|---|---|",
        f"| model | {_fmt(auc['model'])} | {_fmt(ci['model'][0])}–{_fmt(ci['model'][1])} | {_fmt(brier['model'], 4)} |",
        f"| LACE | {_fmt(auc['lace'])} | {_fmt(ci['lace'][0])}–{_fmt(ci['lace'][1])} | {_fmt(brier['lace'], 4)} |",
        "",
        f"AUC difference (model − LACE), 95 % CI on the same {ci['resamples']} resamples: "
        f"{_fmt(ci['difference'][0])} to {_fmt(ci['difference'][1])}. Brier of the base rate: "
        f"{_fmt(brier['base_rate'], 4)}. LACE's Brier uses a logistic fit of LACE on the training split.", "",
        "## Calibration (10 uniform bins, held out)", "", "| score | mean predicted | observed | n |",
        "|---|---|---|---|",
        *[f"| {name} | {_fmt(b['mean_predicted'])} | {_fmt(b['observed_rate'])} | {b['n']} |"
          for name in ("model", "lace") for b in figures["calibration"][name]], "",
        "## Subgroups (fairlearn MetricFrame, held out)",
        f"Selection = score at or above {_fmt(figures['selection']['threshold'])} (the top "
        f"{figures['selection']['share_of_training_scores']:.0%} of training scores).", "",
        "| attribute | group | n | readmissions | model AUC | LACE AUC | selection rate |", "|---|---|---|---|---|---|---|",
    ]
    for facts in figures["subgroups"].values():
        for g in facts["groups"]:
            lines.append(f"| {facts['label']} | {g['group']} | {g['n']} | {g['readmissions']} | "
                         f"{_fmt(g['model_auc'])} | {_fmt(g['lace_auc'])} | {_fmt(g['selection_rate'])} |")
    gap = figures["largest_subgroup_auc_gap"]
    lines += ["", f"Largest subgroup AUC gap: {_fmt(gap['gap'])} ({SUBGROUPS.get(gap['attribute'] or '', 'n/a')}). "
              "Small groups have wide intervals; read the gap with the group sizes.", "",
              "## Limitations",
              "- Trained on simulated members (learning/simulate.py's stated generative model), not on a plan's "
              "outcomes: the figures show the pipeline works, not how the model would do on real members.",
              "- Not yet registered, shadowed or monitored (later parts of issue 26).", ""]
    (folder / "model_card.md").write_text("\n".join(lines))

