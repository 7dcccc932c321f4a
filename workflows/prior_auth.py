"""``PriorAuthWorkflow``: one prior-authorization request, one durable triage run.

The request arrives as a Da Vinci PAS-style Bundle (``careloom um submit``,
``POST /api/prior-auth``); what it carries is stored in the records store
and the run gets identifiers and codes only (``PriorAuthSubmission``). The
agent (``agents.prior_auth_graph``) gathers the facts, recommends a
determination and, through the shared runtime, sends anything adverse to an
MD and a second reviewer before the ClaimResponse is written. The approval
clocks stop at the CMS-0057-F due time; an overdue request escalates and at
the end of its chain expires to a human follow-up, never to a decision.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from agents.prior_auth_graph import build_prior_auth_graph, prior_auth_status
    from agents.prior_auth_state import PriorAuthRequest, PriorAuthState
    from guardrails.actions import ActionRecord
    from guardrails.approvals import ApprovalDecision, PendingApproval
    from guardrails.prior_auth_policy import decision_due
    from guardrails.prior_auth_rules import evaluate_determination
    from runtime.errors import DecisionRefused
    from runtime.search_attributes import RunStatus
    from tools.determination import IssueDeterminationArgs
    from tools.tasks import CreateTaskArgs, CreateTaskInput
    from workflows.agent_run import AgentRun, outcome_of
    from workflows.prior_auth_models import PriorAuthInput, PriorAuthResult, PriorAuthStatus

__all__ = ["PriorAuthWorkflow"]


def _determination(state: PriorAuthState) -> ActionRecord | None:
    return next((r for r in state.actions if isinstance(r.action.arguments, IssueDeterminationArgs)), None)


@workflow.defn(name="PriorAuthWorkflow")
class PriorAuthWorkflow(AgentRun):
    @workflow.init
    def __init__(self, data: PriorAuthInput) -> None:
        self._policy = data.policy
        due = decision_due(data.submission.received_at, data.submission.priority, data.policy)
        self._state = PriorAuthState(request=PriorAuthRequest(
            workflow_id=workflow.info().workflow_id, submission=data.submission, policy=data.policy,
            initiated_by=data.initiated_by, decision_due=due))
        self._start_runtime(data.policy, initiated_by=data.initiated_by, tool_attempts=data.tool_attempts,
                            tool_timeout_seconds=data.tool_timeout_seconds, queues=data.queues)

    @workflow.run
    async def run(self, data: PriorAuthInput) -> PriorAuthResult:
        state = await self.drive(build_prior_auth_graph(), self._state)
        self._state = state
        await self._notify_pend_decided(state)
        return self._result(state, workflow.now())

    async def _notify_pend_decided(self, state: PriorAuthState) -> None:
        """A ClaimResponse issued after a human decision (the request was pended) is notified to the submitter's
        PAS subscriptions by ``PasNotificationWorkflow`` (``feeds.pas_notify``, started by name: feeds sit above
        workflows), an abandoned child given identifiers only. Behind a patch: runs recorded before it replay
        unchanged."""
        record = _determination(state)
        if (record is None or record.status != "executed" or record.result is None or not record.approved_by
                or not record.approval_requests or not workflow.patched("pas-notify-1")):
            return
        reference = record.result.reference
        try:
            await workflow.start_child_workflow(
                "PasNotificationWorkflow",
                {"claim_id": state.request.submission.claim_id, "claim_response": reference,
                 "workflow_id": state.request.workflow_id},
                id=f"pas-notify-{reference.rpartition('/')[2]}",
                parent_close_policy=workflow.ParentClosePolicy.ABANDON)
        except WorkflowAlreadyStartedError:
            # Already notified (the same ClaimResponse): the determination stands, the run ends with it.
            workflow.logger.info("PAS notification already started", extra={"claim_response": reference})

    def run_status(self, state: PriorAuthState) -> RunStatus:
        return prior_auth_status(state)

    def member_pseudonym(self) -> str | None:
        return self._state.facts.member.pseudonym if self._state.facts is not None else None

    def follow_up_task(self, reason: str, key: str) -> CreateTaskInput:
        """A UM reviewer decides by hand a request whose run could not go on, within its CMS-0057-F clock."""
        sub, now = self._state.request.submission, workflow.now()
        return CreateTaskInput(
            member_id=sub.member_id, encounter_id=sub.claim_id, focus=f"Claim/{sub.claim_id}", idempotency_key=key,
            authored_at=now, arguments=CreateTaskArgs(
                kind="run-failure-review", queue="utilization-management/run-review", priority="urgent",
                description="The prior-authorization run could not go on; decide the request by hand before "
                            "its due time",
                reason=reason, due=max(self._state.request.decision_due, now)))

    def check_edit(self, decision: ApprovalDecision, item: PendingApproval) -> None:
        """An edited determination must pass the prior-auth guardrails with the editor's role."""
        facts = self._state.facts
        if facts is None:
            raise DecisionRefused("invalid", "the run has no facts yet; an edit cannot be checked")
        action = next(r.action for r in self._state.actions if r.action.action_id == item.action_id)
        edited = action.model_copy(update={"arguments": decision.arguments})
        verdict = evaluate_determination(edited, facts, self._policy, approved_role=decision.role)
        if verdict.decision != "allow":
            raise DecisionRefused("forbidden", (
                f"the edited determination needs role {verdict.required_role}: {'; '.join(verdict.reasons)}"))

    @workflow.query(name="status")
    def status(self) -> PriorAuthStatus:
        state, record = self._state, _determination(self._state)
        return PriorAuthStatus(
            workflow_id=state.request.workflow_id, status=self._status, member_pseudonym=self.member_pseudonym(),
            priority=state.request.submission.priority, decision_due=state.request.decision_due,
            determination=record.action.arguments.outcome if record else None, planner=state.planner,
            pending_approvals=self._book.pending, actions=[outcome_of(r) for r in state.actions],
            verdicts=state.verdicts)

    def _result(self, state: PriorAuthState, now: datetime) -> PriorAuthResult:
        record = _determination(state)
        issued = record is not None and record.status == "executed"
        return PriorAuthResult(
            workflow_id=state.request.workflow_id,
            status=prior_auth_status(state),
            member_pseudonym=self.member_pseudonym(),
            priority=state.request.submission.priority,
            received_at=state.request.submission.received_at,
            decision_due=state.request.decision_due,
            determination=record.action.arguments.outcome if issued and record else None,
            claim_response=record.result.reference if issued and record and record.result else None,
            decided_by=record.approved_by if issued and record else None,
            decided_at=now if issued else None,
            overdue=not issued or now > state.request.decision_due,
            criteria_version=state.facts.review.criteria_version if state.facts else None,
            planner=state.planner,
            actions=[outcome_of(r) for r in state.actions],
            verdicts=state.verdicts,
            policy_id=state.request.policy.policy_id,
        )
