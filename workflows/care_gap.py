"""``CareGapWorkflow``: one member, one measurement period, one durable care-gap closure run.

The agent (``agents.care_gap_graph``) evaluates the member's gaps (the CQL measures, in an activity), plans a
reminder, a scheduling Task and a PCP notification, and acts through the guardrails. The run then monitors:
it evaluates the gaps again when new data arrive (the ``recheck`` signal: an import, a claim, an observation)
and every ``recheck_days`` on its own clock, closes itself when no gap is open, starts a new reminder round
every ``remind_every_days`` while gaps stay open, and ends after the measurement period's last day otherwise.
A run's business key is member + period (:mod:`workflows.care_gap_client`): re-evaluation never starts a
second one.

Workflow code only: no I/O; time is ``workflow.now()``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from agents.care_gap_graph import build_care_gap_graph, care_gap_status, evaluate_input
    from agents.care_gap_state import CareGapRequest, CareGapState
    from agents.runtime import ToolFailure
    from guardrails.approvals import ApprovalDecision, PendingApproval
    from guardrails.care_gap_rules import evaluate_gap_action
    from runtime.errors import DecisionRefused
    from runtime.search_attributes import RunStatus
    from tools.care_gap_models import GapReview, RecordClosuresInput
    from tools.registry import EVALUATE_GAPS, RECORD_GAP_CLOSURE
    from tools.tasks import CreateTaskArgs, CreateTaskInput
    from workflows.agent_run import AgentRun, outcome_of
    from workflows.care_gap_models import CareGapInput, CareGapResult, CareGapStatus

__all__ = ["CareGapWorkflow"]

_CONTACTED = {"executed", "folded"}


@workflow.defn(name="CareGapWorkflow")
class CareGapWorkflow(AgentRun):
    @workflow.init
    def __init__(self, data: CareGapInput) -> None:
        self._input = data
        self._policy = data.policy
        self._state = CareGapState(request=CareGapRequest(
            workflow_id=workflow.info().workflow_id, member_id=data.member_id, period_start=data.period_start,
            period_end=data.period_end, measure_ids=data.measure_ids, policy=data.policy,
            initiated_by=data.initiated_by))
        self._start_runtime(data.policy, initiated_by=data.initiated_by, tool_attempts=data.tool_attempts,
                            tool_timeout_seconds=data.tool_timeout_seconds, queues=data.queues)
        self._rechecks_asked = 0
        self._rechecks = 0
        self._review: GapReview | None = None
        self._evaluated_at: datetime | None = None
        self._opened: list[str] = []
        self._ended_by = "no-open-gap"
        self._after_outreach: list[str] | None = None  # the worker's record (patch "gap-closure-record-1")

    @workflow.run
    async def run(self, data: CareGapInput) -> CareGapResult:
        graph = build_care_gap_graph()
        state = await self.drive(graph, self._state)
        self._state = state
        if state.facts is not None:
            self._review, self._evaluated_at = state.facts.review, workflow.now()
            self._opened = [g.measure_id for g in state.facts.review.open_gaps]
        if state.facts is not None and not state.facts.eligibility.inforce:
            self._ended_by = "ineligible"
            return self._result(state)
        planned_at = workflow.now()
        while self._review is not None and self._review.open_gaps:
            reason = await self._monitor(planned_at)
            if reason == "withdrawn":
                return self._result(self._state)
            try:
                review = await self.call_tool(EVALUATE_GAPS, evaluate_input(self._state))
            except ToolFailure as failure:
                # The gaps cannot be evaluated any more (the member's records are gone, a measure was removed):
                # a person follows up; the run ends rather than contacting the member on a stale review.
                await self._follow_up(f"{failure.error_type}: {failure}", key_suffix=f"recheck-{self._rechecks}")
                self._ended_by = "needs-attention"
                self.publish(self._state, "needs_attention")
                return self._result(self._state)
            self._rechecks += 1
            self._review, self._evaluated_at = review, workflow.now()
            if not review.open_gaps:
                self._ended_by = "gaps-closed"
                break
            if reason == "period-ended":
                self._ended_by = "period-ended"
                break
            if workflow.now() - planned_at >= timedelta(days=self._input.remind_every_days):
                # Still open a reminder interval after the last plan: a new round, with the facts read again.
                state = await self.drive(graph, self._state.next_round())
                self._state, planned_at = state, workflow.now()
                if state.facts is not None:
                    self._review, self._evaluated_at = state.facts.review, workflow.now()
        await self._record_closures()
        self.publish(self._state, "completed")
        return self._result(self._state)

    async def _record_closures(self) -> None:
        """Have the worker record the gaps this run saw close (checked again there, with whether this run's
        outreach came first): what ``careloom gaps report`` counts as closed after careloom's outreach."""
        still_open = {g.measure_id for g in self._review.open_gaps} if self._review else set()
        closed = [m for m in self._opened if m not in still_open]
        if not closed or not workflow.patched("gap-closure-record-1"):
            return
        try:
            record = await self.call_tool(RECORD_GAP_CLOSURE, RecordClosuresInput(
                member_id=self._input.member_id, period_start=self._input.period_start,
                period_end=self._input.period_end, measure_ids=closed))
        except ToolFailure as failure:
            # The closure stands (the evaluation said so); only the report's figure misses it: said in the log.
            workflow.logger.warning("gap closure not recorded: %s", failure.error_type)
            return
        self._after_outreach = record.after_outreach

    async def _monitor(self, planned_at: datetime) -> str:
        """Wait for a ``recheck``, the next scheduled evaluation, a reminder round or the period's end."""
        end = datetime.combine(self._input.period_end, time.max, tzinfo=UTC)
        now = workflow.now()
        due = min(end, (self._evaluated_at or now) + timedelta(days=self._input.recheck_days),
                  planned_at + timedelta(days=self._input.remind_every_days))
        self._done = False  # a withdrawal is taken while monitoring
        self.publish(self._state, "monitoring")
        asked = self._rechecks_asked
        try:
            await workflow.wait_condition(
                lambda: self._rechecks_asked > asked or self._withdrawal is not None,
                timeout=max(0.0, (due - now).total_seconds()))
        except asyncio.TimeoutError:
            pass
        except asyncio.CancelledError:
            await self._end_cancelled()
            raise
        if self._withdrawal is not None:
            self._state = await self._end_withdrawn(self._state)
            self._ended_by = "withdrawn"
            return "withdrawn"
        self._done = True
        return "period-ended" if workflow.now() >= end else "recheck"

    @workflow.signal(name="recheck")
    def recheck(self) -> None:
        """New data may have closed a gap (an import, a claim, an observation): evaluate again now. Anyone may
        ask; the evaluation reads the records store, so a forged signal only costs one evaluation."""
        self._rechecks_asked += 1

    # --- the program's part of the runtime -------------------------------------------
    def run_status(self, state: CareGapState) -> RunStatus:
        return care_gap_status(state)

    def member_pseudonym(self) -> str | None:
        return self._state.facts.member.pseudonym if self._state.facts is not None else None

    def follow_up_task(self, reason: str, key: str) -> CreateTaskInput:
        """A care coordinator reviews the member's gaps by hand, within a week."""
        now = workflow.now()
        return CreateTaskInput(
            member_id=self._input.member_id, encounter_id=f"care-gaps-{self._input.period_start.isoformat()}",
            focus=f"Patient/{self._input.member_id}", idempotency_key=key, authored_at=now,
            arguments=CreateTaskArgs(
                kind="run-failure-review", queue="care-gaps/run-review", priority="routine",
                description="The care-gap closure run could not go on; review the member's open gaps by hand",
                reason=reason, due=now + timedelta(days=7)))

    def check_edit(self, decision: ApprovalDecision, item: PendingApproval) -> None:
        """An edited action must pass the care-gap guardrails with the editor's role."""
        facts = self._state.facts
        if facts is None:
            raise DecisionRefused("invalid", "the run has no facts yet; an edit cannot be checked")
        edited = self.edited_action(self._state.actions, decision, item)
        self.refuse_edit(evaluate_gap_action(edited, facts, self._policy, now=None, approved_role=decision.role))

    @workflow.query(name="status")
    def status(self) -> CareGapStatus:
        state = self._state
        # Before the first plan finishes (parked, deferred) the facts' review is the latest one.
        review = self._review or (state.facts.review if state.facts is not None else None)
        return CareGapStatus(
            workflow_id=state.request.workflow_id, status=self._status, member_pseudonym=self.member_pseudonym(),
            period_start=self._input.period_start, period_end=self._input.period_end,
            open_gaps=[g.measure_id for g in review.open_gaps] if review else [],
            evaluated_at=self._evaluated_at, round=state.round, planner=state.planner,
            pending_approvals=self._book.pending,
            actions=[outcome_of(r) for r in [*state.earlier, *state.actions]], verdicts=state.verdicts)

    def _result(self, state: CareGapState) -> CareGapResult:
        still_open = [g.measure_id for g in self._review.open_gaps] if self._review else []
        closed = [m for m in self._opened if m not in still_open]
        contacted = any(r.status in _CONTACTED for r in [*state.earlier, *state.actions])
        status = {"withdrawn": "withdrawn", "ineligible": "ineligible", "needs-attention": "needs_attention"}.get(
            self._ended_by, care_gap_status(state))
        return CareGapResult(
            workflow_id=state.request.workflow_id, status=status, member_pseudonym=self.member_pseudonym(),
            period_start=self._input.period_start, period_end=self._input.period_end, opened=self._opened,
            closed=closed, still_open=still_open,
            closed_after_outreach=(self._after_outreach if self._after_outreach is not None
                                   else closed if contacted else []),
            ended_by=self._ended_by, rechecks=self._rechecks, planner=state.planner,
            planner_usage=state.planner_usage, actions=[outcome_of(r) for r in state.actions],
            earlier_actions=[outcome_of(r) for r in state.earlier], verdicts=state.verdicts,
            policy_id=state.request.policy.policy_id)
