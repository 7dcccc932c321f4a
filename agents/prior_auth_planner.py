"""The determination recommender: the prior-authorization program's planner.

The offline rules (``offline-um-rules/1``) turn the evidence review into one
proposed determination:

* every criterion of every line met with cited evidence → **approve**;
* criteria only undocumented (no mention, or too few) → **pend** every line,
  requesting documentation of the unmet criteria;
* a criterion contradicted by the notes (a negated mention) → the lines not
  fully met are denied: **partial** when others are approved, else **deny**,
  citing every unmet criterion with the reason code ``criteria-not-met``;
* coverage not in force on the service date → **deny** with
  ``member-not-eligible``.

Deny, partial and pend are recommendations: the guardrails send them to an MD
(deny and partial with a second reviewer); nothing here executes anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel
from temporalio import activity

from agents.planner import HEARTBEAT_TIMEOUT_SECONDS, PlannerOutput, calibrated, heartbeating
from guardrails.actions import ConfidenceSignal, ProposedAction
from guardrails.facts import PriorAuthFacts
from tools.determination import IssueDeterminationArgs, ItemDecision
from tools.evidence_review import ServiceReview
from tools.registry import ToolSpec

if TYPE_CHECKING:  # workflows import this module (in the sandbox): the calibration code stays worker-side
    from agents.planner_calibration import PlannerCalibration

__all__ = ["OfflineDeterminationRules", "RecommendInput", "Recommender", "RecommenderActivity"]

NAME = "offline-um-rules/1"
FALLBACK_AFTER_ATTEMPTS = 3
"""A model unreachable or rate-limited on this many activity attempts (or on the last one the retry policy
allows, if fewer): the offline rules recommend, flagged for review. A model outage never fails a request."""


class RecommendInput(BaseModel):
    workflow_id: str
    facts: PriorAuthFacts


def _contradicted(service: ServiceReview) -> list[str]:
    return [c.criterion_id for c in service.criteria if c.status == "not_met" and c.contrary]


def _undocumented(service: ServiceReview) -> list[str]:
    return [c.criterion_id for c in service.criteria if c.status == "not_met" and not c.contrary]


def _approved(service: ServiceReview) -> ItemDecision:
    return ItemDecision(sequence=service.sequence, code=service.code, decision="approved",
                        approved_quantity=service.quantity)


def _determination(facts: PriorAuthFacts) -> tuple[IssueDeterminationArgs, str]:
    services = facts.review.services
    if not facts.eligibility.inforce:
        return IssueDeterminationArgs(
            outcome="deny", reason_codes=["member-not-eligible"], criteria_cited=[],
            items=[ItemDecision(sequence=s.sequence, code=s.code, decision="denied") for s in services],
            explanation=f"Coverage not in force on {facts.eligibility.on_date}: "
                        f"{facts.eligibility.reason or 'no active coverage'}."[:500],
        ), "coverage is not in force on the service date"
    contradicted = {s.sequence for s in services if _contradicted(s)}
    undocumented = sorted({c for s in services for c in _undocumented(s)})
    if undocumented and not contradicted:
        return IssueDeterminationArgs(
            outcome="pend", requested_documentation=undocumented,
            items=[ItemDecision(sequence=s.sequence, code=s.code, decision="pended") for s in services],
            explanation=("Additional documentation needed for: " + ", ".join(undocumented) + ".")[:500],
        ), f"{len(undocumented)} criterion(s) not documented in the notes"
    if not contradicted:
        return IssueDeterminationArgs(
            outcome="approve", items=[_approved(s) for s in services],
            explanation="Every criterion of the medical policy is met with cited evidence.",
        ), "every criterion met with cited evidence"
    # The notes contradict a criterion: a denial recommendation for the lines not fully met.
    denied = {s.sequence for s in services if not s.all_met}
    cited = sorted({c.criterion_id for s in services if s.sequence in denied for c in s.criteria
                    if c.status == "not_met"})
    items = [ItemDecision(sequence=s.sequence, code=s.code, decision="denied") if s.sequence in denied
             else _approved(s) for s in services]
    outcome = "deny" if len(denied) == len(services) else "partial"
    return IssueDeterminationArgs(
        outcome=outcome, reason_codes=["criteria-not-met"], criteria_cited=cited, items=items,
        explanation=("Recommendation for physician review: criteria not met (" + ", ".join(cited)
                     + "); the notes contradict some of them.")[:500],
    ), f"the notes contradict the criteria; {len(cited)} not met"


class OfflineDeterminationRules:
    """Deterministic: the same evidence review gives the same proposal."""

    name = NAME

    def recommend(self, data: RecommendInput) -> PlannerOutput:
        facts = data.facts
        args, why = _determination(facts)
        criteria = [c for s in facts.review.services for c in s.criteria]
        cited = [c for c in criteria if c.citations or c.contrary]
        evidence = [f"criteria_version={facts.review.criteria_version}", f"notes={facts.review.notes_read}",
                    *(f"{c.criterion_id}={c.status}" for c in criteria)]
        signals = [
            ConfidenceSignal(name="criteria_with_evidence", value=len(cited) / len(criteria) if criteria else 0.0,
                             weight=0.7, note="criteria with a citation, for or against"),
            ConfidenceSignal(name="eligibility_certainty",
                             value=1.0 if facts.eligibility.outcome == "complete" else 0.0, weight=0.3),
        ]
        confidence = round(sum(s.value * s.weight for s in signals), 4)
        proposal = ProposedAction(action_id="d1-determination", arguments=args,
                                  rationale=f"{args.outcome}: {why}."[:500], evidence=evidence[:30],
                                  confidence=confidence, signals=signals)
        return PlannerOutput(planner=NAME, proposals=[proposal])


class Recommender(Protocol):
    """A model-backed recommender (:class:`agents.prior_auth_model.ModelDeterminationRecommender`)."""

    name: str

    async def recommend(self, data: RecommendInput, *, final_attempt: bool = True) -> PlannerOutput: ...


class RecommenderActivity:
    """The configured recommender as the ``agents.recommend_determination`` activity: the offline rules, or a
    model when one is configured (it falls back to the rules, flagged for review, when it cannot answer)."""

    def __init__(self, model: Recommender | None = None, calibration: PlannerCalibration | None = None) -> None:
        self._model = model
        self._rules = OfflineDeterminationRules()
        self._calibration = calibration  # the worker's (agents.planner_calibration); None: raw confidence

    @activity.defn(name="agents.recommend_determination")
    async def recommend_determination(self, data: RecommendInput) -> PlannerOutput:
        if self._model is None:
            return calibrated(self._rules.recommend(data), self._calibration)
        info = activity.info()
        limit = info.retry_policy.maximum_attempts if info.retry_policy else 0
        final = info.attempt >= min(FALLBACK_AFTER_ATTEMPTS, limit or FALLBACK_AFTER_ATTEMPTS)
        async with heartbeating():  # a model call may take minutes: a dead worker is noticed in seconds
            return calibrated(await self._model.recommend(data, final_attempt=final), self._calibration)


RECOMMEND_DETERMINATION = ToolSpec("agents.recommend_determination", "planner", RecommendInput, PlannerOutput,
                                   heartbeat_seconds=HEARTBEAT_TIMEOUT_SECONDS)
"""The recommender as a tool of the prior-authorization program (hosted by :class:`RecommenderActivity`)."""
