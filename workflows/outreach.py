"""``MemberOutreachWorkflow``: one member, one discharge, one durable agent run.

The LangGraph agent (``agents.graph``) runs inside this workflow. The workflow
is its runtime: tool calls become activities, waits become durable timers,
approvals arrive through the ``decide`` update (validated before anything
reaches history) and nothing is ever auto-approved.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from agents.approvals import (
        ApprovalDecision,
        DecisionResult,
        PendingApproval,
        ReceivedDecision,
        approved_digest,
        check_decision,
    )
    from agents.graph import ToolFailure, build_outreach_graph, run_status
    from agents.planner import PLAN_ACTIVITY, PlannerInput, PlannerOutput
    from agents.state import ActionRecord, OutreachRequest, OutreachState
    from guardrails.policy import GuardrailPolicy
    from guardrails.verdicts import GuardrailVerdict
    from runtime import search_attributes as sa

__all__ = [
    "ActionOutcome",
    "MemberOutreachWorkflow",
    "OutreachInput",
    "OutreachResult",
    "OutreachStatus",
    "outreach_workflow_id",
]

T = TypeVar("T", bound=BaseModel)

# Graph steps per invocation: at most six nodes run before the graph finishes or parks.
_GRAPH_STEP_LIMIT = 50


def outreach_workflow_id(member_id: str, encounter_id: str) -> str:
    """The business key: a second trigger for the same episode cannot start a second run."""
    return f"outreach-{member_id}-{encounter_id}"


class OutreachInput(BaseModel):
    """Identifiers and rules only: no member record travels in history."""

    member_id: str
    encounter_id: str
    policy: GuardrailPolicy = Field(default_factory=GuardrailPolicy)
    initiated_by: str = Field(default="system", description="Who started the run; may not approve it.")
    tool_attempts: int = Field(default=10, ge=1, description="Attempts for a retryable tool failure.")
    tool_timeout_seconds: float = Field(default=60.0, gt=0)


class ActionOutcome(BaseModel):
    action_id: str
    tool: str
    status: str
    digest: str = Field(description="Digest of the action as executed or last proposed.")
    reference: str | None = Field(default=None, description="FHIR reference written, if executed.")
    reason: str | None = None
    approved_by: str | None = None
    approver_role: str | None = None
    edited: bool = False
    confidence: float


class OutreachStatus(BaseModel):
    """What the ``status`` query returns."""

    workflow_id: str
    status: str
    member_pseudonym: str | None
    lace: int | None
    planner: str | None
    pending_approvals: list[PendingApproval]
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]


class OutreachResult(BaseModel):
    """The run's typed outcome."""

    workflow_id: str
    status: str = Field(description="completed, needs_attention, ineligible or not_discharged.")
    member_pseudonym: str | None
    eligible: bool | None
    plan_type: str | None
    lace: int | None
    risk_status: str | None
    planner: str | None
    stop_reasons: list[str]
    actions: list[ActionOutcome]
    verdicts: list[GuardrailVerdict]
    policy_id: str


def _outcome(record: ActionRecord) -> ActionOutcome:
    return ActionOutcome(
        action_id=record.action.action_id,
        tool=record.action.tool,
        status=record.status,
        digest=record.action.digest,
        reference=record.result.reference if record.result else None,
        reason=record.reason,
        approved_by=record.approved_by,
        approver_role=record.approver_role,
        edited=record.edited,
        confidence=record.action.confidence,
    )


@workflow.defn(name="MemberOutreachWorkflow")
class MemberOutreachWorkflow:
    @workflow.init
    def __init__(self, data: OutreachInput) -> None:
        self._input = data
        self._state = OutreachState(request=OutreachRequest(
            workflow_id=workflow.info().workflow_id,
            member_id=data.member_id,
            encounter_id=data.encounter_id,
            policy=data.policy,
            initiated_by=data.initiated_by,
        ))
        self._status = "starting"
        self._pending: dict[str, PendingApproval] = {}
        self._decided: dict[str, tuple[ApprovalDecision, DecisionResult]] = {}
        self._inbox: list[ReceivedDecision] = []
        self._search_attributes: dict[str, Any] = {}

    @workflow.run
    async def run(self, data: OutreachInput) -> OutreachResult:
        graph = build_outreach_graph(self)
        state = self._state
        while True:
            state = await self._step(graph, state)
            if state.finished:
                break
            self.publish(state, run_status(state))
            # Parked: wait durably for a decision or for the earliest deferral to end.
            received = await self._wait_for_decisions(state.next_wake_up)
            state = state.model_copy(update={"inbox": received})
        self._state = state
        return self._result(state)

    async def _step(self, graph: Any, state: OutreachState) -> OutreachState:
        """One graph invocation, from the start or a resume, until finished or parked."""
        final: Any = state
        try:
            # Closing the stream inside the workflow loop: Temporal's loop installs no
            # async-generator finalizer, so an unclosed generator would be finalized by GC.
            async with aclosing(graph.astream(state, config={"recursion_limit": _GRAPH_STEP_LIMIT},
                                              stream_mode="values")) as stream:
                async for final in stream:
                    pass
        except ToolFailure as failure:
            raise ApplicationError(str(failure), type=failure.error_type, non_retryable=True) from None
        return OutreachState.model_validate(final)

    async def _wait_for_decisions(self, until: datetime | None) -> list[ReceivedDecision]:
        if not self._inbox:
            timeout = None if until is None else (until - workflow.now()).total_seconds()
            if timeout is None or timeout > 0:
                try:
                    await workflow.wait_condition(lambda: bool(self._inbox), timeout=timeout)
                except asyncio.TimeoutError:
                    pass
        drained, self._inbox = self._inbox, []
        return drained

    # --- AgentRuntime ---------------------------------------------------------
    def now(self) -> datetime:
        return workflow.now()

    async def call_tool(self, name: str, data: BaseModel, result_type: type[T]) -> T:
        try:
            return await workflow.execute_activity(
                name,
                data,
                result_type=result_type,
                start_to_close_timeout=timedelta(seconds=self._input.tool_timeout_seconds),
                retry_policy=RetryPolicy(maximum_attempts=self._input.tool_attempts,
                                         maximum_interval=timedelta(minutes=1)),
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError):
                raise ToolFailure(cause.type or "ApplicationError", cause.message) from None
            raise ToolFailure("ToolUnavailable", f"{name} failed after retries: {cause or err}") from None

    async def plan(self, data: PlannerInput) -> PlannerOutput:
        return await self.call_tool(PLAN_ACTIVITY, data, PlannerOutput)

    def request_approvals(self, items: list[PendingApproval]) -> None:
        for item in items:
            self._pending[item.approval_id] = item
            workflow.logger.info("approval requested", extra={
                "approval_id": item.approval_id, "tool": item.tool, "required_role": item.required_role,
                "digest": item.digest[:12]})

    def publish(self, state: OutreachState, status: str) -> None:
        self._state, self._status = state, status
        self._sync_search_attributes()

    # --- approvals --------------------------------------------------------------
    @workflow.update(name="decide")
    def decide(self, decision: ApprovalDecision) -> DecisionResult:
        """Apply a supervisor's decision to a pending approval (validated first)."""
        if decision.approval_id in self._decided:
            return self._decided[decision.approval_id][1]
        item = self._pending.pop(decision.approval_id)
        result = DecisionResult(
            approval_id=item.approval_id,
            action_id=item.action_id,
            decision=decision.decision,
            approver=decision.approver,
            role=decision.role,
            reason=decision.reason,
            decided_at=workflow.now(),
            approved_digest=approved_digest(decision, item),
        )
        self._decided[decision.approval_id] = (decision, result)
        self._inbox.append(ReceivedDecision(decision=decision, result=result, approval=item))
        self._sync_search_attributes()
        workflow.logger.info("approval decided", extra={
            "approval_id": item.approval_id, "decision": decision.decision, "role": decision.role})
        return result

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        check_decision(
            decision,
            pending=self._pending,
            decided=self._decided,
            actions={r.action.action_id: r.action for r in self._state.actions},
            facts=self._state.facts,
            policy=self._input.policy,
            initiated_by=self._input.initiated_by,
        )

    @workflow.query(name="status")
    def status(self) -> OutreachStatus:
        state = self._state
        return OutreachStatus(
            workflow_id=state.request.workflow_id,
            status=self._status,
            member_pseudonym=state.facts.member.pseudonym if state.facts else None,
            lace=state.facts.lace if state.facts else None,
            planner=state.planner,
            pending_approvals=list(self._pending.values()),
            actions=[_outcome(r) for r in state.actions],
            verdicts=state.verdicts,
        )

    # --- helpers ------------------------------------------------------------------
    def _sync_search_attributes(self) -> None:
        wanted: dict[str, Any] = {
            sa.STATUS.name: self._status,
            sa.PENDING_APPROVALS.name: len(self._pending),
            sa.APPROVAL_ROLES.name: sorted({p.required_role for p in self._pending.values()}),
        }
        if self._state.facts is not None:
            wanted[sa.MEMBER.name] = self._state.facts.member.pseudonym
        changed = {k: v for k, v in wanted.items() if self._search_attributes.get(k) != v}
        if not changed:
            return
        self._search_attributes.update(changed)
        updates = []
        for key in (sa.STATUS, sa.PENDING_APPROVALS, sa.APPROVAL_ROLES, sa.MEMBER):
            if key.name in changed:
                updates.append(key.value_set(changed[key.name]))
        workflow.upsert_search_attributes(updates)

    def _result(self, state: OutreachState) -> OutreachResult:
        facts = state.facts
        return OutreachResult(
            workflow_id=state.request.workflow_id,
            status=run_status(state),
            member_pseudonym=facts.member.pseudonym if facts else None,
            eligible=facts.eligibility.inforce if facts else None,
            plan_type=facts.eligibility.plan_type if facts else None,
            lace=facts.lace if facts else None,
            risk_status=facts.risk.status if facts else None,
            planner=state.planner,
            stop_reasons=state.stop.reasons if state.stop else [],
            actions=[_outcome(r) for r in state.actions],
            verdicts=state.verdicts,
            policy_id=state.request.policy.policy_id,
        )
