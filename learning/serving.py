"""Serving the registered readmission-risk model in the run, beside LACE; shadow mode.

The worker builds one :class:`RegistryScorer` at start (:func:`scorer_from_registry`) and injects it into
:class:`tools.activities.CareTools` (``tools`` never imports ``learning``). At start it loads the registry's
``champion`` and ``challenger``, each verified: the registered copy's manifest and model file against the
registry's sha256 tags and the model file against the manifest. Anything wrong (no registry, no champion, a
digest mismatch, a copy that will not load) leaves that slot empty with a reason; it never stops the worker.

At scoring time the features of the stay are read from the records store at the discharge
(:func:`learning.features.stay_features`, as the training table was built) and the champion scores them; the
challenger scores the same features beside it (``shadow``), affecting nothing. A missing feature, an unknown
stay or any other failure is a reason in the outcome and the run keeps LACE: :meth:`RegistryScorer.score` never
raises. Reasons name features and models, never a member or a stay (they are logged and recorded in history).
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from learning.explain import Explainer
from learning.features import MissingFeature, stay_features
from learning.model import MODEL_NAME, LoadedModel
from learning.registry import CHALLENGER, CHAMPION, TAG_GATE, ModelRegistry, RegisteredVersion
from store.records import CareRecordStore
from tools.risk import ModelOutcome, ModelScore

__all__ = ["RegistryScorer", "ServedModel", "scorer_from_registry", "served_model"]

log = structlog.get_logger(__name__)


_controller: Any = None
_controller_lock = threading.Lock()


def _one_openmp_thread() -> AbstractContextManager[Any]:
    """One OpenMP thread for the calling thread while a single stay is scored.

    scikit-learn's gradient-boosting predictor opens an OpenMP parallel region per tree; for one row on a busy
    2-core machine that cost 28-280 ms per prediction (measured), against about 1-3 ms on one thread. The limit
    is set on the calling (activity) thread only and restored after (threadpoolctl, a scikit-learn dependency).
    """
    global _controller  # noqa: PLW0603 - one controller per process: it inspects the loaded libraries once
    if _controller is None:
        with _controller_lock:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="openmp")


@dataclass(frozen=True)
class ServedModel:
    registered: RegisteredVersion
    model: LoadedModel
    alias: str
    explainer: Explainer | None = None  # the champion's (SHAP); a shadow score is not shown to anyone
    explainer_reason: str | None = None

    def score(self, features: dict[str, object]) -> ModelScore:
        with _one_openmp_thread():
            probability = self.model.score(features)
            contributions, reason, base = [], self.explainer_reason, None
            if self.explainer is not None:
                try:
                    contributions = self.explainer.contributions(features, probability)
                    base = round(self.explainer.base_probability, 6)
                except Exception as err:  # noqa: BLE001 - the score stands without its explanation
                    reason = f"the explanation failed ({err.__class__.__name__})"
        return ModelScore(name=self.registered.name, version=self.registered.version, label=self.registered.label,
                          digest=self.registered.digest, alias=self.alias, probability=round(probability, 6),
                          base_probability=base, contributions=contributions, explanation_reason=reason)


@dataclass(frozen=True)
class RegistryScorer:
    """The champion (or why none) and the challenger (or why none), as loaded at worker start."""

    champion: ServedModel | None
    challenger: ServedModel | None
    champion_reason: str | None = None
    challenger_reason: str | None = None

    def score(self, store: CareRecordStore, member_id: str, encounter_id: str) -> ModelOutcome:
        if self.champion is None and self.challenger is None:
            return ModelOutcome(model_reason=self.champion_reason, shadow_reason=self.challenger_reason)
        try:
            features = stay_features(store, member_id, encounter_id)
        except MissingFeature as err:
            reason = (f"missing feature{'s' if len(err.missing) > 1 else ''} {', '.join(err.missing)} at scoring "
                      "time (never imputed): LACE alone")
            return ModelOutcome(model_reason=reason if self.champion else self.champion_reason,
                                shadow_reason=reason if self.challenger else self.challenger_reason)
        except Exception as err:  # noqa: BLE001 - never fail the run: LACE stands
            reason = f"the stay's features could not be read ({err.__class__.__name__}): LACE alone"
            return ModelOutcome(model_reason=reason if self.champion else self.champion_reason,
                                shadow_reason=reason if self.challenger else self.challenger_reason)
        model, model_reason = _score(self.champion, features, self.champion_reason)
        shadow, shadow_reason = _score(self.challenger, features, self.challenger_reason)
        return ModelOutcome(model=model, shadow=shadow, model_reason=model_reason, shadow_reason=shadow_reason)

    def describe(self) -> dict[str, object]:
        """What is served, for the worker's start-up log (no member data)."""
        def one(served: ServedModel | None, reason: str | None) -> dict[str, object]:
            if served is None:
                return {"loaded": False, "reason": reason}
            return {"loaded": True, "name": served.registered.name, "version": served.registered.version,
                    "digest": served.registered.digest[:16]}
        return {CHAMPION: one(self.champion, self.champion_reason),
                CHALLENGER: one(self.challenger, self.challenger_reason)}


def _score(served: ServedModel | None, features: dict[str, object],
           absent: str | None) -> tuple[ModelScore | None, str | None]:
    if served is None:
        return None, absent
    try:
        return served.score(features), None
    except MissingFeature as err:
        return None, f"missing feature {', '.join(err.missing)} for {served.alias} version " \
                     f"{served.registered.version} (never imputed): LACE alone"
    except Exception as err:  # noqa: BLE001 - never fail the run
        return None, f"{served.alias} version {served.registered.version} failed to score " \
                     f"({err.__class__.__name__}): LACE alone"


def _load(registry: ModelRegistry, name: str, alias: str) -> tuple[ServedModel | None, str | None]:
    try:
        registered = registry.by_alias(name, alias)
    except Exception as err:  # noqa: BLE001 - an unreadable registry must not stop the worker
        return None, f"the model registry could not be read ({err.__class__.__name__}): LACE alone"
    if registered is None:
        return None, f"no {alias} of {name} in the model registry" + (": LACE alone" if alias == CHAMPION else "")
    if alias == CHAMPION and registered.tags.get(TAG_GATE) != "passed":
        # Only `promote` sets the champion, after its gate; an alias set in the registry's database by other
        # means (anyone who can write it) serves nothing.
        log.warning("risk_model.refused", alias=alias, name=name, version=registered.version, error="no gate")
        return None, (f"{alias} {name} version {registered.version} refused at load: it has not passed the "
                      "evaluation gate (promote it with `careloom model promote`); LACE alone")
    try:
        model = registry.verify(registered)
    except Exception as err:  # noqa: BLE001 - a digest mismatch or a broken copy: LACE, and say so
        log.warning("risk_model.refused", alias=alias, name=name, version=registered.version, error=str(err))
        return None, (f"{alias} {name} version {registered.version} refused at load: "
                      f"{_short(err)}; LACE alone")
    return served_model(registered, model, alias), None


def served_model(registered: RegisteredVersion, model: LoadedModel, alias: str) -> ServedModel:
    """A verified model as served under ``alias``: the champion with its SHAP explainer (or why none)."""
    explainer, explainer_reason = None, None
    if alias == CHAMPION:
        try:
            explainer = Explainer(model.estimator, model.features)
        except Exception as err:  # noqa: BLE001 - scores without explanations, and says so
            log.warning("risk_model.no_explainer", name=registered.name, version=registered.version,
                        error=type(err).__name__)
            explainer_reason = f"no explanation: SHAP could not explain this model ({err.__class__.__name__})"
    return ServedModel(registered=registered, model=model, alias=alias, explainer=explainer,
                       explainer_reason=explainer_reason)


def _short(err: Exception) -> str:
    text = str(err)
    if "does not match" in text or "is not the registry" in text:
        return "its digest does not match the registry (the file was changed or replaced)"
    return f"{err.__class__.__name__}"


def scorer_from_registry(state_dir: Path, name: str = MODEL_NAME, *,
                         registry: ModelRegistry | None = None) -> RegistryScorer:
    """The champion and challenger of ``name`` in the registry (``registry``, default the SQLite file under
    ``state_dir``); never raises."""
    registry = registry or ModelRegistry(state_dir)
    if not registry.exists():
        absent = registry.absence or "no model registry in the state folder"
        reason = f"{absent}: LACE alone (register and promote a model with `careloom model register|promote`)"
        scorer = RegistryScorer(None, None, reason, absent)
    else:
        champion, champion_reason = _load(registry, name, CHAMPION)
        challenger, challenger_reason = _load(registry, name, CHALLENGER)
        scorer = RegistryScorer(champion, challenger, champion_reason, challenger_reason)
    log.info("risk_model.serving", **scorer.describe())
    return scorer
