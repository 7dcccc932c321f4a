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
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from agents.approvals import (
        ApprovalDecision,
        DecisionRefused,
        DecisionResult,
        PendingApproval,
        ReceivedDecision,
        SignOff,
        check_decision,
        decision_key,
    )
    from agents.actions import action_digest
    from agents.graph import ToolFailure, build_outreach_graph, run_status
    from agents.planner import MODEL_ENDPOINT_ERROR, PLAN_ACTIVITY, ModelUsage, PlannerInput, PlannerOutput
    from agents.state import ActionRecord, OutreachRequest, OutreachState
    from guardrails.policy import GuardrailPolicy
    from guardrails.routing import clock_for
    from guardrails.verdicts import GuardrailVerdict
    from runtime import search_attributes as sa
    from store.ledger import LedgerAppend, LedgerEntry

__all__ = [
    "ActionOutcome",
    "MemberOutreachWorkflow",
    "OutreachInput",
    "OutreachResult",
    "OutreachStatus",
]

T = TypeVar("T", bound=BaseModel)

# One planning attempt: up to two model requests (the repair round trip), each bounded by the model timeout.
_PLAN_TIMEOUT = timedelta(minutes=5)

# Graph steps per invocation: at most six nodes run before the graph finishes or parks.
_GRAPH_STEP_LIMIT = 50


class OutreachInput(BaseModel):
    """Identifiers and rules only: no member record travels in history."""

    member_id: str
    encounter_id: str
    policy: GuardrailPolicy = Field(default_factory=GuardrailPolicy)
    initiated_by: str = Field(default="system", description="Who started the run; may not approve it.")
    tool_attempts: int = Field(default=10, ge=1, description="Attempts for a retryable tool failure.")
    tool_timeout_seconds: float = Field(default=60.0, gt=0)
    planning_budget_seconds: float = Field(default=7200.0, gt=0, description=(
        "How long planning is retried (a model outage) before the offline rules plan for human review."))


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
    planner_usage: ModelUsage | None = None
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
    planner_usage: ModelUsage | None = None
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
        self._policy = data.policy
        self._state = OutreachState(request=OutreachRequest(
            workflow_id=workflow.info().workflow_id,
            member_id=data.member_id,
            encounter_id=data.encounter_id,
            policy=data.policy,
            initiated_by=data.initiated_by,
        ))
        self._status = "starting"
        self._pending: dict[str, PendingApproval] = {}
        self._decided: dict[str, ApprovalDecision] = {}
        self._answered: dict[str, DecisionResult] = {}  # decision_key -> result, for identical repeats
        self._inbox: list[ReceivedDecision] = []
        self._ledger_outbox: list[LedgerEntry] = []
        self._ledger_seq = 0
        self._search_attributes: dict[str, Any] = {}

    @workflow.run
    async def run(self, data: OutreachInput) -> OutreachResult:
        graph = build_outreach_graph()
        state = self._state
        while True:
            state = await self._step(graph, state)
            await self._flush_ledger()
            if state.finished:
                break
            self.publish(state, run_status(state))
            # Parked: wait durably for decisions, SLA clocks or the earliest deferral.
            received = await self._wait(state)
            state = state.model_copy(update={"inbox": received})
        self._state = state
        return self._result(state)

    async def _step(self, graph: Any, state: OutreachState) -> OutreachState:
        """One graph invocation, from the start or a resume, until finished or parked."""
        final: Any = state
        try:
            # Closing the stream inside the workflow loop: Temporal's loop installs no
            # async-generator finalizer, so an unclosed generator would be finalized by GC.
            config = {"recursion_limit": _GRAPH_STEP_LIMIT, "configurable": {"runtime": self}}
            async with aclosing(graph.astream(state, config=config, stream_mode="values")) as stream:
                async for final in stream:
                    pass
        except ToolFailure as failure:
            raise ApplicationError(str(failure), type=failure.error_type, non_retryable=True) from None
        return OutreachState.model_validate(final)

    async def _wait(self, state: OutreachState) -> list[ReceivedDecision]:
        """Until a final decision or expiry arrives, or a deferral is due; reminders and escalations on the way."""
        while not self._inbox:
            now = workflow.now()
            deferral = state.next_wake_up
            if deferral is not None and deferral <= now:
                break
            clocks = [p.sla_deadline for p in self._pending.values()]
            clocks += [p.remind_at for p in self._pending.values() if not p.reminded]
            wake = min([t for t in [deferral, *clocks] if t is not None], default=None)
            # Every accepted decision adds an answer; one that changes a pending item re-arms the clocks.
            answers = len(self._answered)
            if wake is None or wake > now:
                try:
                    await workflow.wait_condition(
                        lambda: bool(self._inbox) or len(self._answered) != answers,
                        timeout=None if wake is None else (wake - now).total_seconds())
                except asyncio.TimeoutError:
                    pass
            self._tick_clocks(workflow.now())
            await self._flush_ledger()
            self._sync_search_attributes()
        drained, self._inbox = self._inbox, []
        return drained

    def _tick_clocks(self, now: datetime) -> None:
        """Record reminders; escalate items past their deadline; expire them when the chain ends."""
        routing = self._policy.approvals
        for approval_id, item in list(self._pending.items()):
            if not item.reminded and now >= item.remind_at:
                item = item.model_copy(update={"reminded": True})
                self._pending[approval_id] = item
                self._ledger(item, "reminded", "system")
            if now < item.sla_deadline:
                continue
            next_queue = routing.queues[item.queue].escalate_to
            if next_queue is None:
                del self._pending[approval_id]
                self._inbox.append(ReceivedDecision(kind="expired", approval=item))
                self._ledger(item, "expired", "system", reason="escalation chain exhausted; nothing was executed")
                continue
            clock = clock_for(next_queue, item.required_role, self._policy, now)
            item = item.entering(clock, escalation_level=item.escalation_level + 1)
            self._pending[approval_id] = item
            self._ledger(item, "escalated", "system", reason=f"SLA deadline passed; now in {clock.queue}")

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
        """Plan through the configured planner, retried for the planning budget: a model outage parks the run.

        When the model endpoint refuses the request for good (a wrong key, model or URL), or the budget
        runs out, the offline rules plan instead and every action they propose goes to a human with the
        reason. Nothing waits past the budget for a model that does not come back.
        """
        budget = timedelta(seconds=self._input.planning_budget_seconds)
        try:
            return await workflow.execute_activity(
                PLAN_ACTIVITY, data, result_type=PlannerOutput,
                start_to_close_timeout=min(_PLAN_TIMEOUT, budget), schedule_to_close_timeout=budget,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2),
                                         maximum_interval=timedelta(minutes=5), maximum_attempts=0,
                                         non_retryable_error_types=[MODEL_ENDPOINT_ERROR]))
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == MODEL_ENDPOINT_ERROR:
                reason = cause.message
            elif isinstance(cause, ActivityTimeout) or err.retry_state == RetryState.TIMEOUT:
                # Out of budget: the server reports the timeout, or the last attempt's error when the next
                # retry would have started past the budget.
                last = cause.cause if isinstance(cause, ActivityTimeout) else cause
                reason = (f"no plan from the model within the planning budget ({budget})"
                          + (f"; last error: {last.message}" if isinstance(last, ApplicationError) else ""))
            else:
                raise ToolFailure("PlanningFailed", f"{PLAN_ACTIVITY} failed: {cause or err}") from None
            workflow.logger.warning("model could not plan; planning with the offline rules for review")
            return await self.call_tool(PLAN_ACTIVITY, data.model_copy(update={"fallback_reason": reason}),
                                        PlannerOutput)

    def request_approvals(self, items: list[PendingApproval]) -> None:
        for item in items:
            self._pending[item.approval_id] = item
            self._ledger(item, "requested", "system", reason="; ".join(item.reasons))
            workflow.logger.info("approval requested", extra={
                "approval_id": item.approval_id, "tool": item.tool, "queue": item.queue,
                "required_role": item.required_role, "digest": item.digest[:12]})

    def publish(self, state: OutreachState, status: str) -> None:
        self._state, self._status = state, status
        self._sync_search_attributes()

    # --- decision ledger ----------------------------------------------------------
    def _ledger(self, item: PendingApproval, event: str, actor: str, *, role: str | None = None,
                reason: str | None = None, digest: str | None = None) -> None:
        self._ledger_seq += 1
        self._ledger_outbox.append(LedgerEntry(
            event_id=f"{item.workflow_id}/{self._ledger_seq}", workflow_id=item.workflow_id,
            approval_id=item.approval_id, event=event, actor=actor, role=role, at=workflow.now(),
            digest=digest or item.digest, queue=item.queue, reason=reason, policy_id=item.policy_id))

    async def _flush_ledger(self) -> None:
        if not self._ledger_outbox:
            return
        entries, self._ledger_outbox = self._ledger_outbox, []
        await workflow.execute_activity(
            "ledger.append", LedgerAppend(entries=entries), result_type=int,
            start_to_close_timeout=timedelta(seconds=30),
            # The ledger is the 6-year record: keep trying (backing off) rather than lose an entry.
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)))

    # --- approvals --------------------------------------------------------------
    @workflow.update(name="decide")
    def decide(self, decision: ApprovalDecision) -> DecisionResult:
        """Apply a supervisor's decision to a pending approval (validated first)."""
        key = decision_key(decision)
        if key in self._answered:
            return self._answered[key]
        item = self._pending[decision.approval_id]
        now = workflow.now()
        result = self._apply(decision, item, now)
        self._answered[key] = result
        self._sync_search_attributes()
        workflow.logger.info("approval decided", extra={
            "approval_id": item.approval_id, "decision": decision.decision, "outcome": result.outcome,
            "role": decision.role})
        return result

    def _apply(self, decision: ApprovalDecision, item: PendingApproval, now: datetime) -> DecisionResult:
        base = {"approval_id": item.approval_id, "action_id": item.action_id, "decision": decision.decision,
                "approver": decision.approver, "role": decision.role, "reason": decision.reason, "decided_at": now}
        if decision.decision == "reassign":
            clock = clock_for(decision.queue or item.queue, item.required_role, self._policy, now)
            moved = item.entering(clock)
            self._pending[item.approval_id] = moved
            self._ledger(moved, "reassigned", decision.approver, role=decision.role, reason=decision.reason)
            return DecisionResult(**base, outcome="reassigned", approved_digest=None, queue=clock.queue)
        if decision.decision == "reject":
            del self._pending[item.approval_id]
            result = DecisionResult(**base, outcome="rejected", approved_digest=None, queue=item.queue)
            self._finish(decision, item)
            self._ledger(item, "rejected", decision.approver, role=decision.role, reason=decision.reason)
            return result
        if decision.decision == "edit" and decision.arguments is not None:
            arguments, digest = decision.arguments, action_digest(decision.arguments)
        else:
            arguments, digest = item.arguments, item.digest
        final = item.model_copy(update={"arguments": arguments, "digest": digest})
        if item.dual_signoff and not item.signoffs:
            # First of two sign-offs: the item stays pending for a second, distinct reviewer.
            waiting = final.model_copy(update={
                "required_role": self._policy.approvals.second_signoff_role,
                "signoffs": [SignOff(approver=decision.approver, role=decision.role, at=now, digest=digest)]})
            self._pending[item.approval_id] = waiting
            self._ledger(waiting, "signed_off", decision.approver, role=decision.role, reason=decision.reason)
            return DecisionResult(**base, outcome="awaiting_second_signoff", approved_digest=digest,
                                  queue=item.queue)
        del self._pending[item.approval_id]
        outcome = "edited" if decision.decision == "edit" else "approved"
        result = DecisionResult(**base, outcome=outcome, approved_digest=digest, queue=item.queue)
        self._finish(decision, final)  # signoffs before this one, for the record
        self._ledger(final, outcome, decision.approver, role=decision.role, reason=decision.reason, digest=digest)
        return result

    def _finish(self, decision: ApprovalDecision, item: PendingApproval) -> None:
        self._decided[item.approval_id] = decision
        self._inbox.append(ReceivedDecision(decision=decision, approval=item))

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        try:
            check_decision(
                decision,
                pending=self._pending,
                decided=self._decided,
                answered=self._answered,
                actions={r.action.action_id: r.action for r in self._state.actions},
                facts=self._state.facts,
                policy=self._policy,
                initiated_by=self._input.initiated_by,
            )
        except DecisionRefused as refused:
            raise ApplicationError(str(refused), type=refused.code, non_retryable=True) from None

    @workflow.query(name="status")
    def status(self) -> OutreachStatus:
        state = self._state
        return OutreachStatus(
            workflow_id=state.request.workflow_id,
            status=self._status,
            member_pseudonym=state.facts.member.pseudonym if state.facts else None,
            lace=state.facts.lace if state.facts else None,
            planner=state.planner,
            planner_usage=state.planner_usage,
            pending_approvals=list(self._pending.values()),
            actions=[_outcome(r) for r in state.actions],
            verdicts=state.verdicts,
        )

    # --- helpers ------------------------------------------------------------------
    def _sync_search_attributes(self) -> None:
        pending = list(self._pending.values())
        wanted: dict[str, Any] = {
            sa.STATUS.name: self._status,
            sa.PENDING_APPROVALS.name: len(pending),
            sa.APPROVAL_ROLES.name: sorted({p.required_role for p in pending}),
            sa.QUEUES.name: sorted({p.queue for p in pending}),
            sa.PRIORITY.name: ("urgent" if any(p.priority == "urgent" for p in pending)
                               else "routine" if pending else None),
            sa.SLA_DEADLINE.name: min((p.sla_deadline for p in pending), default=None),
        }
        if self._state.facts is not None:
            wanted[sa.MEMBER.name] = self._state.facts.member.pseudonym
        changed = {k: v for k, v in wanted.items() if self._search_attributes.get(k, "<unset>") != v}
        if not changed:
            return
        self._search_attributes.update(changed)
        updates = []
        for key in sa.ALL_KEYS:
            if key.name in changed:
                value = changed[key.name]
                updates.append(key.value_unset() if value is None else key.value_set(value))
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
            planner_usage=state.planner_usage,
            stop_reasons=state.stop.reasons if state.stop else [],
            actions=[_outcome(r) for r in state.actions],
            verdicts=state.verdicts,
            policy_id=state.request.policy.policy_id,
        )
