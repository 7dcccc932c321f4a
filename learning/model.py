"""Train, save, verify and load the learned readmission-risk model.

The artifact is a folder: ``model.joblib`` (the fitted scikit-learn estimator, joblib) and ``manifest.json``
(name, version, the feature list in input order, the training data's sha256, the code version, the seed, the
split, the parameters, metrics, the LACE-to-probability fit, the ``reference`` distributions drift monitoring
compares with, and the sha256 of ``model.joblib``). A later registry, serving, shadow scoring and drift
monitoring read the manifest; :func:`load_model` refuses a model file whose digest is not the manifest's, before
unpickling it.

``reference`` (:func:`reference_distributions`) holds, from the TRAINING split only: per feature, the interior
edges of its bins and the share of training stays in each bin; the same for the model's own training-split scores;
and the training-split readmission rate. A value ``x`` falls in bin ``i`` where ``edges[i-1] < x <= edges[i]``
(the first bin is everything up to the first edge, the last everything above the last): :func:`bin_counts`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learning.dataset import LABEL, DatasetError, load_dataset
from learning.features import FEATURES, MissingFeature, require_features
from runtime.errors import CareloomError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "MODEL_NAME", "REFERENCE_BINS", "LoadedModel", "ModelIntegrityError",
           "bin_counts", "code_version", "load_model", "reference_distributions", "split", "train"]

MODEL_NAME = "readmission-30d-hgb"
MODEL_FILE, MANIFEST_FILE = "model.joblib", "manifest.json"
TEST_FRACTION = 0.3
PARAMS: dict[str, Any] = {"max_iter": 150, "learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 50,
                          "l2_regularization": 1.0, "early_stopping": False}
_ROOT = Path(__file__).resolve().parent.parent
REFERENCE_BINS = 10
"""Deciles: at most this many bins per feature and for the score in the manifest's ``reference``."""


class ModelIntegrityError(CareloomError):
    """A model artifact is incomplete or its model file is not the one its manifest describes."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_version() -> dict[str, Any]:
    """The git commit of the code that trained (and whether the work tree had changes), when git knows."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True,  # noqa: S607
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_ROOT,  # noqa: S607
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "dirty": None}
    return {"git_sha": sha or None, "dirty": dirty}


def split(frame: pd.DataFrame, seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(training row positions, held-out row positions): stratified on the label, fixed by ``seed``."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(frame))
    labels = frame[LABEL].to_numpy()
    if len(frame) < 20 or labels.sum() < 4 or (labels == 0).sum() < 4:
        raise DatasetError(f"the table has {len(frame)} stays and {int(labels.sum())} readmissions: too few to "
                           "train and validate; generate more members")
    train_rows, test_rows = train_test_split(positions, test_size=test_fraction, stratify=labels,
                                             random_state=seed)
    return np.sort(train_rows), np.sort(test_rows)


def _ids_digest(frame: pd.DataFrame, rows: np.ndarray) -> str:
    return hashlib.sha256("\n".join(frame["encounter_id"].iloc[rows]).encode()).hexdigest()


def _edges(values: np.ndarray, *, binary: bool) -> list[float]:
    """Interior edges of right-closed bins: 0 for a 0/1 feature (two bins), else the training deciles (observed
    values, so no bin is empty in training), deduplicated, without the maximum."""
    import numpy as np

    if binary:
        return [0.0]
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, REFERENCE_BINS + 1)[1:-1], method="lower")
    top = float(values.max())
    return [float(q) for q in np.unique(quantiles) if q < top]


def bin_counts(values: Any, edges: list[float]) -> list[int]:  # noqa: ANN401 - an array-like of numbers
    """How many ``values`` fall in each of the ``len(edges) + 1`` right-closed bins the interior edges make."""
    import numpy as np

    positions = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="left")
    return [int(n) for n in np.bincount(positions, minlength=len(edges) + 1)]


def _distribution(values: np.ndarray, *, binary: bool = False) -> dict[str, Any]:
    edges = _edges(values, binary=binary)
    counts = bin_counts(values, edges)
    return {"edges": edges, "shares": [n / len(values) for n in counts], "mean": float(values.mean())}


def reference_distributions(x: np.ndarray, scores: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The manifest's ``reference``: the training split's distribution of each feature (``x``'s columns, in
    :data:`FEATURES` order) and of the model's scores, and its readmission rate."""
    import numpy as np

    features = {}
    for i, name in enumerate(FEATURES):
        column = x[:, i]
        features[name] = _distribution(column, binary=bool(np.isin(column, (0.0, 1.0)).all()))
    return {"source": "training split", "stays": len(y),
            "bins": f"deciles: at most {REFERENCE_BINS} bins, two for a 0/1 feature; edges are the interior cut "
                    "points (deduplicated); a value x is in bin i when edges[i-1] < x <= edges[i]",
            "features": features, "score": _distribution(scores), "readmission_rate": float(y.mean())}


def train(data: Path, out: Path, *, seed: int, version: str | None = None) -> dict[str, Any]:
    """Fit the model on the training split of ``data``'s table, write the artifact folder ``out``; its manifest."""
    import joblib
    import numpy as np
    import sklearn
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score

    frame, digest = load_dataset(data)
    train_rows, test_rows = split(frame, seed)
    x = frame[list(FEATURES)].to_numpy(dtype=float)
    y = frame[LABEL].to_numpy(dtype=int)
    model = HistGradientBoostingClassifier(random_state=seed, **PARAMS)
    started = time.perf_counter()
    model.fit(x[train_rows], y[train_rows])
    train_seconds = time.perf_counter() - started
    # LACE as a probability, for its Brier score: a logistic fit on the TRAINING split only.
    lace = frame["lace_total"].to_numpy(dtype=float).reshape(-1, 1)
    lace_fit = LogisticRegression().fit(lace[train_rows], y[train_rows])
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / MODEL_FILE
    joblib.dump(model, model_path)
    fitted = model.predict_proba(x[train_rows])[:, 1]
    created = datetime.now(UTC).replace(microsecond=0)
    manifest: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": version or created.strftime("%Y%m%d%H%M%S"),
        "created_at": created.isoformat(),
        "task": "30-day inpatient readmission after an index inpatient discharge (outreach prioritisation only; "
                "never the basis of a coverage decision)",
        "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
        "params": {**PARAMS, "random_state": seed},
        "features": list(FEATURES),
        "label": LABEL,
        "seed": seed,
        "training_data": {"file": "dataset.csv", "sha256": digest, "rows": len(frame),
                          "readmissions": int(y.sum())},
        "split": {"method": "sklearn.model_selection.train_test_split, stratified on the label",
                  "test_fraction": TEST_FRACTION, "seed": seed, "train_rows": len(train_rows),
                  "held_out_rows": len(test_rows), "held_out_ids_sha256": _ids_digest(frame, test_rows)},
        "code_version": code_version(),
        "library_versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                             "joblib": joblib.__version__},
        "lace_probability": {"method": "LogisticRegression on lace_total, training split only",
                             "coef": float(lace_fit.coef_[0][0]), "intercept": float(lace_fit.intercept_[0])},
        "metrics": {"train": {"auc": float(roc_auc_score(y[train_rows], fitted)),
                              "brier": float(brier_score_loss(y[train_rows], fitted)),
                              "train_seconds": round(train_seconds, 3)}},
        "model_file": {"name": MODEL_FILE, "sha256": sha256_file(model_path), "format": "joblib"},
        "reference": reference_distributions(x[train_rows], fitted, y[train_rows]),
    }
    write_manifest(out, manifest)
    return manifest


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def read_artifact_manifest(folder: Path, *, required: tuple[str, ...], error: type[Exception], what: str,
                           redo: str) -> dict[str, Any]:
    """An artifact folder's manifest (a model's, a calibrator's): readable JSON with the ``required`` keys, else
    ``error`` naming the problem and ``redo`` (how to make a new one)."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise error(f"no {MANIFEST_FILE} in {folder}: not a {what} artifact ({redo})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise error(f"{path} is not readable JSON ({err.__class__.__name__})") from None
    for key in required:
        if key not in manifest:
            raise error(f"{path} lacks {key!r}: the {what} artifact is incomplete ({redo})")
    return manifest


def verified_artifact_file(folder: Path, manifest: dict[str, Any], *, key: str, default: str,
                           error: type[Exception], redo: str) -> Path:
    """The artifact's file named by ``manifest[key]``, after checking its sha256 against the manifest: a mismatch
    is refused (``error``) before anything unpickles the file."""
    path = folder / manifest[key].get("name", default)
    if not path.is_file():
        raise error(f"{path.name} file {path} is missing; the manifest names it")
    expected, found = manifest[key].get("sha256"), sha256_file(path)
    if expected != found:
        raise error(f"{path.name} file {path} does not match its manifest: sha256 {found[:16]}… but the manifest "
                    f"records {str(expected)[:16]}…; the file was changed or replaced, refusing to load it ({redo})")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    return read_artifact_manifest(folder, required=("name", "version", "features", "model_file"),
                                  error=ModelIntegrityError, what="model", redo="train one with `careloom model train`")


@dataclass
class LoadedModel:
    """A verified model: its manifest and estimator; scores only complete inputs in the manifest's order."""

    manifest: dict[str, Any]
    estimator: Any
    folder: Path

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    def score(self, values: Mapping[str, Any]) -> float:
        """The readmission probability for one stay's features; a missing feature is refused."""
        row = require_features(values, self.features, where=f"model {self.manifest['name']} "
                                                            f"{self.manifest['version']}")
        return float(self.estimator.predict_proba([row])[0, 1])

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if not missing:
            missing = [f for f in self.features if frame[f].isna().any()]
        if missing:
            raise MissingFeature(missing, f"model {self.manifest['name']} {self.manifest['version']}")
        return self.estimator.predict_proba(frame[self.features].to_numpy(dtype=float))[:, 1]


def load_model(path: Path) -> LoadedModel:
    """The model in artifact folder ``path`` (or its manifest file), after checking the model file's sha256
    against the manifest: a mismatch is refused before the file is unpickled."""
    import joblib

    folder = path.parent if path.name == MANIFEST_FILE else path
    manifest = read_manifest(folder)
    model_path = verified_artifact_file(folder, manifest, key="model_file", default=MODEL_FILE,
                                        error=ModelIntegrityError,
                                        redo="retrain, or restore the file the manifest describes")
    estimator = joblib.load(model_path)  # noqa: S301 - digest verified above
    if getattr(estimator, "n_features_in_", len(manifest["features"])) != len(manifest["features"]):
        raise ModelIntegrityError(f"model file {model_path} expects {estimator.n_features_in_} features, the "
                                  f"manifest lists {len(manifest['features'])}")
    return LoadedModel(manifest=manifest, estimator=estimator, folder=folder)
