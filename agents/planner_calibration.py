"""The planner activities' confidence calibration (:mod:`learning.calibration`), applied after planning.

Each planner activity host (outreach, care gaps, determinations) hands its proposals to
:meth:`PlannerCalibration.apply` before they leave the activity. With a verified calibrator installed in
``<state_dir>/calibration/current`` an action's ``confidence`` becomes its kind's calibrated value; without one
(none installed, a digest mismatch, an unreadable file, a kind the calibrator refused) the action keeps the
planner's raw confidence. Either way the raw value stays on the action as the zero-weight signal
``raw_confidence`` whose note says what was done and why, so the approval item and the audit show both. The
reason a calibrator could not be used is logged once per change of the folder (paths and versions only, no
PHI). The folder is checked on every plan (a ``stat``), so installing a new version needs no restart.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from guardrails.actions import ConfidenceSignal, ProposedAction

if TYPE_CHECKING:
    from learning.calibration import LoadedCalibrators

__all__ = ["RAW_CONFIDENCE_SIGNAL", "PlannerCalibration"]

RAW_CONFIDENCE_SIGNAL = "raw_confidence"
_FILES = ("manifest.json", "calibrators.joblib")
"""learning.calibration's MANIFEST_FILE and CALIBRATOR_FILE (imported only when a calibrator is loaded: scikit-learn
and joblib stay out of processes that never load one)."""
log = structlog.get_logger(__name__)


class PlannerCalibration:
    """The calibrator in one folder, re-read when its files change; ``apply`` calibrates proposals."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._stamp: tuple[object, ...] | None = None
        self._loaded: LoadedCalibrators | None = None
        self._reason: str = "not loaded yet"
        self.current()  # load now (the worker builds its hosts before polling), not in the first plan

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> PlannerCalibration:
        """The worker's: ``<state_dir>/calibration/current`` (:func:`learning.calibration.current_path`)."""
        return cls(state_dir / "calibration" / "current")

    def _files_stamp(self) -> tuple[object, ...]:
        stamp: list[object] = []
        for name in _FILES:
            try:
                st = (self.folder / name).stat()
            except OSError:
                stamp.append(None)
            else:
                stamp.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamp)

    def current(self) -> tuple[LoadedCalibrators | None, str]:
        """(the verified calibrator or None, why not)."""
        stamp = self._files_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._loaded, self._reason = self._load(stamp)
            return self._loaded, self._reason

    def _load(self, stamp: tuple[object, ...]) -> tuple[LoadedCalibrators | None, str]:
        if stamp[0] is None:
            reason = f"no calibrator installed in {self.folder}"
            log.info("confidence calibration off", reason=reason)
            return None, reason
        try:
            from learning.calibration import CalibrationError, load_calibrators
        except ImportError as err:  # e.g. an install that predates the learning package
            reason = f"the calibration code cannot be imported ({err.__class__.__name__}: {err.name})"
            log.warning("confidence calibration off: raw confidence used", reason=reason)
            return None, reason
        try:
            loaded = load_calibrators(self.folder)
        except CalibrationError as err:
            reason = f"calibrator in {self.folder} refused: {err}"
        except Exception as err:  # noqa: BLE001 - an unreadable file must not fail planning
            reason = f"calibrator in {self.folder} could not be read ({err.__class__.__name__})"
        else:
            log.info("confidence calibration on", folder=str(self.folder), version=loaded.version,
                     method=loaded.manifest["method"], kinds=loaded.manifest["kinds"])
            return loaded, ""
        log.warning("confidence calibration off: raw confidence used", reason=reason)
        return None, reason

    def apply(self, proposals: list[ProposedAction]) -> list[ProposedAction]:
        """The proposals with calibrated confidence (or raw, said why) and the raw value as a signal."""
        if not proposals:
            return proposals
        loaded, reason = self.current()
        if loaded is None and self._stamp is not None and self._stamp[0] is None:
            return proposals  # no calibrator installed: the planner's raw confidence, as before calibration existed
        out = []
        for proposal in proposals:
            if any(s.name == RAW_CONFIDENCE_SIGNAL for s in proposal.signals):
                out.append(proposal)  # already calibrated (a re-applied output)
                continue
            raw = proposal.confidence
            value = None
            if loaded is not None:
                try:
                    value = loaded.calibrate(proposal.tool, raw)
                except Exception as err:  # noqa: BLE001 - a broken estimator must not fail planning
                    why = f"calibrator {loaded.version} failed on {proposal.tool} ({err.__class__.__name__})"
                    log.warning("confidence calibration failed: raw confidence used", reason=why)
                else:
                    why = (loaded.manifest.get("refused", {}).get(proposal.tool)
                           or f"calibrator {loaded.version} has no {proposal.tool} calibrator")
            else:
                why = reason
            if value is None:
                note = f"not calibrated: {why}; the confidence is the planner's raw value"
                out.append(proposal.model_copy(update={"signals": [*proposal.signals, ConfidenceSignal(
                    name=RAW_CONFIDENCE_SIGNAL, value=raw, weight=0.0, note=note[:300])]}))
                continue
            assert loaded is not None
            count = loaded.manifest.get("counts", {}).get(proposal.tool, {}).get("decisions")
            note = (f"calibrated by {loaded.manifest['name']} {loaded.version} ({loaded.manifest['method']}, "
                    f"{count} {proposal.tool} decisions): raw {raw:.4f} -> {value:.4f}")
            out.append(proposal.model_copy(update={"confidence": value, "signals": [
                *proposal.signals, ConfidenceSignal(name=RAW_CONFIDENCE_SIGNAL, value=raw, weight=0.0, note=note)]}))
        return out
