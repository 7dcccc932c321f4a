"""The ``Planner`` interface and the planning activity.

Any planner (the offline rules now, an OpenAI-compatible model later) turns
the run's facts into typed :class:`ProposedAction` objects. The workflow calls
it through one activity, ``agents.plan_outreach``.

Planning waits on a model for up to minutes, so planner activities heartbeat
(:func:`heartbeating`) and the workflow gives their calls a heartbeat timeout
(:data:`HEARTBEAT_TIMEOUT_SECONDS`, via ``ToolSpec.heartbeat_seconds``): a
worker that dies mid-call is noticed and the call retried elsewhere in seconds,
not after the start-to-close timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field, model_validator
from temporalio import activity

from guardrails.actions import ProposedAction
from guardrails.facts import RunFacts
from tools.registry import ToolSpec

if TYPE_CHECKING:  # workflows import this module (in the sandbox): the calibration code stays worker-side
    from agents.planner_calibration import PlannerCalibration

__all__ = ["HEARTBEAT_TIMEOUT_SECONDS", "MODEL_ENDPOINT_ERROR", "PLAN_ACTIVITY", "PLAN_OUTREACH", "heartbeating", "ModelUsage", "Planner", "PlannerActivity", "PlannerInput", "PlannerOutput",
           "calibrated"]

PLAN_ACTIVITY = "agents.plan_outreach"
MODEL_ENDPOINT_ERROR = "ModelEndpointError"
"""The error type of a model request refused for good (bad key, model or URL): not retried."""
HEARTBEAT_TIMEOUT_SECONDS = 20.0
"""The heartbeat timeout of planner calls: how long a dead worker's planning goes unnoticed. Four beats fit in
it (:func:`heartbeating`), so one late beat on a busy worker does not time a live call out."""


@asynccontextmanager
async def heartbeating(every: float = HEARTBEAT_TIMEOUT_SECONDS / 4) -> AsyncIterator[None]:
    """Heartbeat every ``every`` seconds while the block runs, from a task beside it on the activity's loop.

    A beat between model requests would not do: one request may take as long as the model timeout (up to
    120 s), longer than the heartbeat timeout. Outside an activity (a planner called directly) it does nothing.
    """
    if not activity.in_activity():
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()  # the SDK throttles what it sends to the server; calling often is cheap
            await asyncio.sleep(every)

    beats = asyncio.create_task(beat(), name="planner-heartbeat")
    try:
        yield
    finally:
        # Not awaited: awaiting here could swallow a cancellation meant for the activity itself.
        beats.cancel()


class PlannerInput(BaseModel):
    workflow_id: str
    facts: RunFacts
    high_risk_lace: int = Field(ge=0, le=19, description=(
        "The policy's high-risk LACE cut-off, to size the plan; planners never decide routing. Only this, not "
        "the whole policy, travels in the planner's input (history size)."))
    fallback_reason: str | None = Field(default=None, description=(
        "Set when the configured model could not plan (e.g. its endpoint refused the request): the offline "
        "rules plan instead and every proposal is flagged for human review with this reason."))

    @model_validator(mode="before")
    @classmethod
    def _from_recorded_histories(cls, data: Any) -> Any:  # noqa: ANN401
        # Histories recorded before this field carried the whole policy; read its cut-off from there.
        if isinstance(data, dict) and "high_risk_lace" not in data and isinstance(data.get("policy"), dict):
            return {**data, "high_risk_lace": data["policy"].get("high_risk_lace", 10)}
        return data


class ModelUsage(BaseModel):
    """What one planner step cost: every request to the model, the repair round trip included."""

    requests: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    estimated_cost_usd: float = Field(ge=0.0, description="At the configured per-token prices.")
    repaired: bool = Field(default=False, description="The first answer was refused and the model answered again.")
    latency_ms: int = Field(default=0, ge=0)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class PlannerOutput(BaseModel):
    planner: str = Field(description="Planner name and rules version, e.g. offline-rules/1.")
    model: str | None = Field(default=None, description="Model name when a language model planned.")
    prompt_version: str | None = Field(default=None, description="Prompt template set and its digest.")
    usage: ModelUsage | None = None
    proposals: list[ProposedAction]


class Planner(Protocol):
    name: str

    async def plan(self, data: PlannerInput) -> PlannerOutput: ...


class ReviewPlanner(Protocol):
    def plan_for_review(self, data: PlannerInput, reason: str) -> PlannerOutput: ...


class PlannerActivity:
    """Exposes the configured planner as the ``agents.plan_outreach`` activity.

    ``fallback`` (the offline rules) plans when the workflow asks for it with ``fallback_reason``: the
    model could not plan, and every proposal goes to a human with that reason.

    ``calibration`` (the worker's :class:`PlannerCalibration`, ``<state_dir>/calibration/current``) turns each
    proposal's raw confidence into its kind's calibrated one before it leaves the activity, whichever planner
    planned; the raw value stays on the action as the ``raw_confidence`` signal. None: no calibration step.
    """

    def __init__(self, planner: Planner, fallback: ReviewPlanner,
                 calibration: PlannerCalibration | None = None) -> None:
        self._planner = planner
        self._fallback = fallback
        self._calibration = calibration

    @activity.defn(name=PLAN_ACTIVITY)
    async def plan_outreach(self, data: PlannerInput) -> PlannerOutput:
        if data.fallback_reason is not None:
            return calibrated(self._fallback.plan_for_review(data, data.fallback_reason), self._calibration)
        async with heartbeating():
            return calibrated(await self._planner.plan(data), self._calibration)


def calibrated(output: PlannerOutput, calibration: PlannerCalibration | None) -> PlannerOutput:
    """``output`` with its proposals' confidence calibrated (raw kept as a signal); as is without a calibration."""
    if calibration is None or not output.proposals:
        return output
    return output.model_copy(update={"proposals": calibration.apply(output.proposals)})


PLAN_OUTREACH = ToolSpec(PLAN_ACTIVITY, "planner", PlannerInput, PlannerOutput,
                         heartbeat_seconds=HEARTBEAT_TIMEOUT_SECONDS)
"""The outreach planner as a tool of the outreach program (hosted by :class:`PlannerActivity`)."""
