"""Calibrated routing confidence: a calibrator per action kind, fitted on supervisors' decisions.

A planner's ``confidence`` is a weighted sum of fact-completeness signals, not a probability: the evaluation
measured its expected calibration error at 0.197 (offline rules). A calibrator maps the raw confidence of one
action kind (send_outreach, create_task, draft_care_plan, issue_determination) to P(a supervisor approves the
action as proposed), fitted on decisions: label 1 for ``approved`` (a dual sign-off counts when it ends
approved), 0 for ``edited`` or ``rejected``. Methods: ``isotonic`` (scikit-learn ``IsotonicRegression``, clipped
to [0, 1]) or ``platt`` (``LogisticRegression`` on the raw confidence).

A kind with fewer than ``min_decisions`` decisions, or whose decisions are all one label, is refused by name
(:class:`CalibrationError`) and keeps its raw confidence; a fit where every kind is refused raises.

The artifact is a folder in the style of :mod:`learning.model`: ``calibrators.joblib`` (kind → fitted
estimator, joblib) and ``manifest.json`` (name, version, method, min_decisions, per-kind counts, refused kinds,
the sha256 of the decisions fitted on, the code version, and the sha256 of ``calibrators.joblib``).
:func:`load_calibrators` refuses a file whose digest is not the manifest's, before unpickling it. The worker
reads the installed one from ``<state_dir>/calibration/current`` (:func:`install_calibrators`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from learning.model import code_version, read_artifact_manifest, sha256_file, verified_artifact_file
from runtime.errors import CareloomError
from store.ledger_entries import LedgerEntry

__all__ = ["CALIBRATION_DIR", "CALIBRATOR_FILE", "CALIBRATOR_NAME", "CURRENT", "MANIFEST_FILE", "METHODS",
           "MIN_DECISIONS", "CalibrationError", "CalibratorIntegrityError", "Decision", "FittedCalibrators",
           "LedgerDecisions", "LoadedCalibrators", "current_path", "decisions_digest", "decisions_from_ledger",
           "expected_calibration_error", "fit_calibrators", "install_calibrators", "load_calibrators",
           "read_manifest", "save_calibrators"]

CALIBRATOR_NAME = "routing-confidence-calibrator"
CALIBRATOR_FILE, MANIFEST_FILE = "calibrators.joblib", "manifest.json"
CALIBRATION_DIR, CURRENT = "calibration", "current"
MIN_DECISIONS = 200
METHODS = ("isotonic", "platt")
Method = Literal["isotonic", "platt"]
ECE_BINS = 10


class CalibrationError(CareloomError):
    """A calibrator cannot be fitted (too few decisions, one label only, no raw confidence) or used."""


class CalibratorIntegrityError(CalibrationError):
    """A calibrator artifact is incomplete or its file is not the one its manifest describes."""


@dataclass(frozen=True)
class Decision:
    """One supervisor's decision on one proposed action: its kind, the planner's raw confidence when the item
    was requested, and the label (1 approved as proposed, 0 edited or rejected)."""

    kind: str
    confidence: float
    label: int


@dataclass
class LedgerDecisions:
    """The decisions read from ledger entries, and how many decided items could not be used and why."""

    decisions: list[Decision]
    without_confidence: int = 0
    without_kind: int = 0
    undecided: int = 0
    unverified: int = 0
    """Decisions the worker could not verify (unsigned, or appended by another run): never fitted on."""


def decisions_from_ledger(entries: Iterable[LedgerEntry],
                          confidences: Mapping[tuple[str, str], float] | None = None) -> LedgerDecisions:
    """Each approval item's final decision (``approved`` → 1; ``edited``/``rejected`` → 0; ``signed_off`` alone
    is a step, the item counts once its decision is written) with its raw confidence at request time.

    The raw confidence comes from ``confidences`` ((workflow id, approval id) → value), else from a
    ``confidence`` attribute of the item's ``requested`` entry when the ledger records one. Items with no
    decision (pending, expired, withdrawn) or no raw confidence are counted, not used. Only decisions the worker
    verified (``verified`` true: a person's signed decision, checked against the worker's keys and the run) are
    labels: a run started through Temporal cannot feed the calibrator decisions nobody made."""
    requested: dict[tuple[str, str], LedgerEntry] = {}
    final: dict[tuple[str, str], LedgerEntry] = {}
    for entry in entries:
        key = (entry.workflow_id, entry.approval_id)
        if entry.event == "requested":
            requested.setdefault(key, entry)
        elif entry.event in ("approved", "edited", "rejected"):
            final[key] = entry
    unverified = {key for key, entry in final.items() if entry.verified is not True}
    final = {key: entry for key, entry in final.items() if key not in unverified}
    out = LedgerDecisions(decisions=[], unverified=len(unverified))
    out.undecided = sum(1 for key in requested if key not in final and key not in unverified)
    for key, decision in final.items():
        asked = requested.get(key)
        kind = decision.tool or (asked.tool if asked is not None else None)
        raw = (confidences or {}).get(key)
        if raw is None and asked is not None:
            raw = getattr(asked, "confidence", None)
        if kind is None:
            out.without_kind += 1
        elif raw is None:
            out.without_confidence += 1
        else:
            out.decisions.append(Decision(kind, float(raw), 1 if decision.event == "approved" else 0))
    return out


def decisions_digest(decisions: Iterable[Decision]) -> str:
    """sha256 of the decisions as sorted ``kind,confidence,label`` lines: the same decisions, the same digest."""
    lines = sorted(f"{d.kind},{d.confidence:.6f},{d.label}" for d in decisions)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def expected_calibration_error(confidences: Iterable[float], labels: Iterable[int], bins: int = ECE_BINS) -> float:
    """Σ (n_b / N) |mean confidence_b − approval rate_b| over equal-width bins on [0, 1] (the evaluation's)."""
    import numpy as np

    conf, lab = np.asarray(list(confidences), dtype=float), np.asarray(list(labels), dtype=float)
    if conf.size == 0:
        raise CalibrationError("no decisions to measure calibration on")
    index = np.minimum((conf * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            ece += mask.sum() / conf.size * abs(conf[mask].mean() - lab[mask].mean())
    return round(float(ece), 4)


def _estimator(method: str) -> Any:  # noqa: ANN401
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        return IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=1e6)  # next to unregularised: Platt scaling on one feature
    raise CalibrationError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")


def _predict(estimator: Any, raw: Any) -> Any:  # noqa: ANN401
    import numpy as np

    values = np.clip(np.asarray(raw, dtype=float), 0.0, 1.0)
    if hasattr(estimator, "predict_proba"):
        return estimator.predict_proba(values.reshape(-1, 1))[:, 1]
    return np.clip(estimator.predict(values), 0.0, 1.0)


@dataclass
class FittedCalibrators:
    """The per-kind calibrators of one fit; ``refused`` names each kind that keeps its raw confidence and why."""

    method: str
    min_decisions: int
    estimators: dict[str, Any]
    counts: dict[str, dict[str, Any]]
    refused: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    decisions: int = 0

    def calibrate(self, kind: str, raw: float) -> float | None:
        """The calibrated confidence of one action of ``kind``; None when ``kind`` has no calibrator."""
        estimator = self.estimators.get(kind)
        if estimator is None:
            return None
        return round(float(_predict(estimator, [raw])[0]), 4)

    def calibrate_many(self, kinds: list[str], raws: list[float]) -> list[float]:
        """Calibrated confidences; a kind without a calibrator keeps its raw value."""
        out = [float(r) for r in raws]
        for kind, estimator in self.estimators.items():
            rows = [i for i, k in enumerate(kinds) if k == kind]
            if rows:
                for i, value in zip(rows, _predict(estimator, [raws[i] for i in rows]), strict=True):
                    out[i] = round(float(value), 4)
        return out


def _fit_kind(kind: str, decisions: list[Decision], *, min_decisions: int, method: str) -> Any:  # noqa: ANN401
    """One kind's fitted estimator; :class:`CalibrationError` naming the kind when it cannot be fitted."""
    approved = sum(d.label for d in decisions)
    if len(decisions) < min_decisions:
        raise CalibrationError(f"{kind}: {len(decisions)} decisions, fewer than the minimum {min_decisions}; "
                               "it keeps its raw confidence (collect more decisions or lower --min-decisions)")
    if approved in (0, len(decisions)):
        raise CalibrationError(f"{kind}: all {len(decisions)} decisions were "
                               f"{'approved as proposed' if approved else 'edited or rejected'}; nothing to "
                               "calibrate against, it keeps its raw confidence")
    estimator = _estimator(method)
    x = [d.confidence for d in decisions]
    y = [d.label for d in decisions]
    if method == "platt":
        estimator.fit([[v] for v in x], y)
    else:
        estimator.fit(x, y)
    return estimator


def fit_calibrators(entries: Iterable[Decision | LedgerEntry], *, min_decisions: int = MIN_DECISIONS,
                    method: str = "isotonic",
                    confidences: Mapping[tuple[str, str], float] | None = None) -> FittedCalibrators:
    """A calibrator per action kind from ``entries``: :class:`Decision` objects, or ledger entries (read with
    :func:`decisions_from_ledger`, raw confidences from ``confidences``). Kinds with too few decisions are
    refused by name and keep their raw confidence; :class:`CalibrationError` when no kind could be fitted."""
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    if min_decisions < 1:
        raise CalibrationError(f"min_decisions must be at least 1, not {min_decisions}")
    items = list(entries)
    ledger = [e for e in items if isinstance(e, LedgerEntry)]
    decisions = [e for e in items if isinstance(e, Decision)]
    note = ""
    if ledger:
        read = decisions_from_ledger(ledger, confidences)
        decisions += read.decisions
        if read.without_confidence:
            note = (f"; {read.without_confidence} decided ledger items carry no raw confidence (the ledger's "
                    "requested entries do not record it) and were not used")
    for d in decisions:
        if not 0.0 <= d.confidence <= 1.0 or d.label not in (0, 1):
            raise CalibrationError(f"a {d.kind} decision has confidence {d.confidence} and label {d.label}: "
                                   "confidence must be in [0, 1] and the label 0 or 1")
    if not decisions:
        raise CalibrationError("no decisions with a raw confidence to fit a calibrator on" + note)
    by_kind: dict[str, list[Decision]] = {}
    for d in decisions:
        by_kind.setdefault(d.kind, []).append(d)
    fitted = FittedCalibrators(method=method, min_decisions=min_decisions, estimators={}, counts={},
                               digest=decisions_digest(decisions), decisions=len(decisions))
    for kind in sorted(by_kind):
        group = by_kind[kind]
        raw = [d.confidence for d in group]
        labels = [d.label for d in group]
        fitted.counts[kind] = {"decisions": len(group), "approved": sum(labels),
                               "ece_raw": expected_calibration_error(raw, labels)}
        try:
            fitted.estimators[kind] = _fit_kind(kind, group, min_decisions=min_decisions, method=method)
        except CalibrationError as err:
            fitted.refused[kind] = str(err)
            continue
        fitted.counts[kind]["ece_fitted_in_sample"] = expected_calibration_error(
            fitted.calibrate_many([kind] * len(raw), raw), labels)
    if not fitted.estimators:
        raise CalibrationError("no action kind could be calibrated: " + "; ".join(fitted.refused.values()) + note)
    return fitted


def save_calibrators(fitted: FittedCalibrators, out: Path, *, version: str | None = None,
                     source: str = "decisions") -> dict[str, Any]:
    """Write the artifact folder ``out`` (``calibrators.joblib`` + ``manifest.json``); its manifest."""
    import joblib
    import numpy as np
    import sklearn

    out.mkdir(parents=True, exist_ok=True)
    path = out / CALIBRATOR_FILE
    joblib.dump(fitted.estimators, path)
    created = datetime.now(UTC).replace(microsecond=0)
    manifest: dict[str, Any] = {
        "name": CALIBRATOR_NAME,
        "version": version or created.strftime("%Y%m%d%H%M%S"),
        "created_at": created.isoformat(),
        "task": "routing confidence → P(a supervisor approves the action as proposed), per action kind",
        "method": fitted.method,
        "estimator": ("sklearn.isotonic.IsotonicRegression" if fitted.method == "isotonic"
                      else "sklearn.linear_model.LogisticRegression (Platt)"),
        "min_decisions": fitted.min_decisions,
        "kinds": sorted(fitted.estimators),
        "counts": fitted.counts,
        "refused": fitted.refused,
        "fitted_on": {"source": source, "decisions": fitted.decisions, "sha256": fitted.digest},
        "code_version": code_version(),
        "library_versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__,
                             "joblib": joblib.__version__},
        "calibrator_file": {"name": CALIBRATOR_FILE, "sha256": sha256_file(path), "format": "joblib"},
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    manifest = read_artifact_manifest(folder, required=("name", "version", "method", "kinds", "calibrator_file"),
                                      error=CalibratorIntegrityError, what="calibrator",
                                      redo="fit one with `careloom model calibrate fit`")
    if manifest["name"] != CALIBRATOR_NAME:
        raise CalibratorIntegrityError(f"{path} describes {manifest['name']!r}, not a {CALIBRATOR_NAME}")
    return manifest


@dataclass
class LoadedCalibrators:
    """A verified calibrator artifact: its manifest and per-kind estimators."""

    manifest: dict[str, Any]
    fitted: FittedCalibrators
    folder: Path

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def calibrate(self, kind: str, raw: float) -> float | None:
        return self.fitted.calibrate(kind, raw)


def load_calibrators(path: Path) -> LoadedCalibrators:
    """The calibrators in artifact folder ``path`` (or its manifest file), after checking the file's sha256
    against the manifest: a mismatch is refused before the file is unpickled."""
    import joblib

    folder = path.parent if path.name == MANIFEST_FILE else path
    manifest = read_manifest(folder)
    file = verified_artifact_file(folder, manifest, key="calibrator_file", default=CALIBRATOR_FILE,
                                  error=CalibratorIntegrityError,
                                  redo="refit, or restore the file the manifest describes")
    estimators = joblib.load(file)  # noqa: S301 - digest verified above
    if not isinstance(estimators, dict) or sorted(estimators) != sorted(manifest["kinds"]):
        raise CalibratorIntegrityError(f"calibrator file {file} holds other kinds than its manifest lists "
                                       f"({', '.join(manifest['kinds'])})")
    fitted = FittedCalibrators(method=manifest["method"], min_decisions=int(manifest.get("min_decisions", 0)),
                               estimators=estimators, counts=manifest.get("counts", {}),
                               refused=manifest.get("refused", {}),
                               digest=manifest.get("fitted_on", {}).get("sha256", ""),
                               decisions=int(manifest.get("fitted_on", {}).get("decisions", 0)))
    return LoadedCalibrators(manifest=manifest, fitted=fitted, folder=folder)


def current_path(state_dir: Path) -> Path:
    """Where the worker looks for the installed calibrator: ``<state_dir>/calibration/current``."""
    return state_dir / CALIBRATION_DIR / CURRENT


def install_calibrators(artifact: Path, state_dir: Path) -> Path:
    """Verify ``artifact`` and copy it to ``<state_dir>/calibration/current`` (replacing the one there; the
    worker picks the new one up on its next plan). Returns the installed folder."""
    loaded = load_calibrators(artifact)
    target = current_path(state_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=target.parent))
    for name in (MANIFEST_FILE, loaded.manifest["calibrator_file"].get("name", CALIBRATOR_FILE)):
        shutil.copy2(loaded.folder / name, staging / name)
    old = target.parent / f".replaced-{loaded.version}-{datetime.now(UTC):%Y%m%d%H%M%S%f}"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
