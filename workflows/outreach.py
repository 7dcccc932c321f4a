"""``MemberOutreachWorkflow``: one member, one discharge, one durable agent run.

The LangGraph agent (``agents.outreach_graph``) runs inside this workflow. The workflow
is its runtime: tool calls become activities, waits become durable timers,
approvals arrive through the ``decide`` update (validated before anything
reaches history) and nothing is ever auto-approved.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, is_cancelled_exception
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from agents.outreach_graph import build_outreach_graph, run_status
    from agents.outreach_state import OutreachRequest, OutreachState
    from agents.planner import MODEL_ENDPOINT_ERROR, PLAN_OUTREACH, PlannerInput, PlannerOutput
    from agents.runtime import ToolFailure
    from guardrails.approvals import ApprovalDecision, PendingApproval
    from guardrails.outreach_rules import evaluate_action
    from runtime.errors import DecisionRefused
    from runtime.search_attributes import RunStatus
    from tools.tasks import CreateTaskArgs, CreateTaskInput
    from workflows.agent_run import AgentRun, activity_summary, outcome_of
    from workflows.outreach_models import OutreachInput, OutreachResult, OutreachStatus

__all__ = ["MemberOutreachWorkflow"]

# One planning attempt: up to two model requests (the repair round trip), each bounded by the model timeout.
_PLAN_TIMEOUT = timedelta(minutes=5)


@workflow.defn(name="MemberOutreachWorkflow")
class MemberOutreachWorkflow(AgentRun):
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
        self._start_runtime(data.policy, initiated_by=data.initiated_by, tool_attempts=data.tool_attempts,
                            tool_timeout_seconds=data.tool_timeout_seconds, queues=data.queues)

    @workflow.run
    async def run(self, data: OutreachInput) -> OutreachResult:
        state = await self.drive(build_outreach_graph(), self._state)
        self._state = state
        return self._result(state)

    # --- the program's part of the runtime -------------------------------------------
    def run_status(self, state: OutreachState) -> RunStatus:
        return run_status(state)

    def member_pseudonym(self) -> str | None:
        return self._state.facts.member.pseudonym if self._state.facts is not None else None

    def episode_attributes(self) -> dict[str, object]:
        """The discharge and the TCM contact deadline, for `careloom runs list` and `outreach status`."""
        facts = self._state.facts
        if facts is None:
            return {}
        return {"CareloomDischargedAt": facts.clinical.stay.discharged_at, "CareloomTcmDue": facts.tcm_contact_due}

    def follow_up_task(self, reason: str, key: str) -> CreateTaskInput:
        """A care manager reviews a run that could not go on, within a day."""
        now = workflow.now()
        return CreateTaskInput(
            member_id=self._input.member_id, encounter_id=self._input.encounter_id, idempotency_key=key,
            authored_at=now, arguments=CreateTaskArgs(
                kind="run-failure-review", queue="care-management/run-review", priority="urgent",
                description="The post-discharge outreach run could not go on; review the member and reach them "
                            "by hand",
                reason=reason, due=now + timedelta(days=1)))

    def check_edit(self, decision: ApprovalDecision, item: PendingApproval) -> None:
        """The edited action must pass the outreach guardrails with the editor's role."""
        facts = self._state.facts
        if facts is None:
            raise DecisionRefused("invalid", "the run has no facts yet; an edit cannot be checked")
        edited = self.edited_action(self._state.actions, decision, item)
        self.refuse_edit(evaluate_action(edited, facts, self._policy, now=None, approved_role=decision.role))

    async def plan(self, data: PlannerInput) -> PlannerOutput:
        """Plan through the configured planner, retried for the planning budget: a model outage parks the run.

        When the model endpoint refuses the request for good (a wrong key, model or URL), or the budget
        runs out, the offline rules plan instead and every action they propose goes to a human with the
        reason. Nothing waits past the budget for a model that does not come back.
        """
        budget = timedelta(seconds=self._input.planning_budget_seconds)
        self.check_may_start(PLAN_OUTREACH)
        try:
            return await workflow.execute_activity(
                PLAN_OUTREACH.name, data, result_type=PLAN_OUTREACH.result_type, task_queue=self.queue_for(PLAN_OUTREACH),
                heartbeat_timeout=PLAN_OUTREACH.heartbeat_timeout,
                summary=activity_summary(PLAN_OUTREACH, data, queue=self.queue_for(PLAN_OUTREACH)),
                start_to_close_timeout=min(_PLAN_TIMEOUT, budget), schedule_to_close_timeout=budget,
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=2),
                                         maximum_interval=timedelta(minutes=5), maximum_attempts=0,
                                         non_retryable_error_types=[MODEL_ENDPOINT_ERROR]))
        except ActivityError as err:
            if workflow.cancellation_reason() is not None or is_cancelled_exception(err):
                raise asyncio.CancelledError(workflow.cancellation_reason()) from None
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
                raise ToolFailure("PlanningFailed", f"{PLAN_OUTREACH.name} failed: {cause or err}") from None
            workflow.logger.warning("model could not plan; planning with the offline rules for review")
            # The offline rules call no model: on the run's own queue, not behind the model rate limit again.
            return await self.call_tool(PLAN_OUTREACH, data.model_copy(update={"fallback_reason": reason}),
                                        own_queue=True)

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
            pending_approvals=self._book.pending,
            actions=[outcome_of(r) for r in state.actions],
            verdicts=state.verdicts,
        )

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
            actions=[outcome_of(r) for r in state.actions],
            verdicts=state.verdicts,
            policy_id=state.request.policy.policy_id,
        )
