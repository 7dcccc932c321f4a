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

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from agents.prior_auth_graph import build_prior_auth_graph, prior_auth_status
    from agents.prior_auth_state import PriorAuthRequest, PriorAuthState
    from guardrails.actions import ActionRecord
    from guardrails.approvals import ApprovalDecision, PendingApproval
    from guardrails.prior_auth_policy import appeal_due, decision_due, extended_due
    from guardrails.prior_auth_rules import evaluate_determination
    from runtime.errors import DecisionRefused
    from runtime.search_attributes import RunStatus
    from tools.determination import IssueDeterminationArgs
    from tools.pas_models import PendAnswer
    from tools.tasks import CreateTaskArgs, CreateTaskInput
    from workflows.agent_run import AgentRun, outcome_of
    from workflows.prior_auth_models import PendAnswerResult, PriorAuthInput, PriorAuthResult, PriorAuthStatus

__all__ = ["PriorAuthWorkflow"]


PEND_ANSWER_PATCH = "pend-answer-1"
"""Patch marker of the pend loop (a pended request waits for the provider's answer and is reviewed again): runs
recorded before it end at their pend, as they did."""


def _determination(state: PriorAuthState) -> ActionRecord | None:
    """The latest round's determination (an earlier round's when this one has not proposed one yet)."""
    return next((r for r in reversed([*state.earlier, *state.actions])
                 if isinstance(r.action.arguments, IssueDeterminationArgs)), None)


def _pended(state: PriorAuthState) -> bool:
    record = next((r for r in state.actions if isinstance(r.action.arguments, IssueDeterminationArgs)), None)
    return record is not None and record.status == "executed" and record.action.arguments.outcome == "pend"


@workflow.defn(name="PriorAuthWorkflow")
class PriorAuthWorkflow(AgentRun):
    @workflow.init
    def __init__(self, data: PriorAuthInput) -> None:
        self._policy = data.policy
        appeal = data.appeal
        due = (appeal_due(appeal.filed_at, appeal.expedited, data.policy) if appeal is not None
               else decision_due(data.submission.received_at, data.submission.priority, data.policy))
        self._state = PriorAuthState(request=PriorAuthRequest(
            workflow_id=workflow.info().workflow_id, submission=data.submission, policy=data.policy,
            initiated_by=data.initiated_by, decision_due=due, appeal=appeal))
        self._start_runtime(data.policy, initiated_by=data.initiated_by, tool_attempts=data.tool_attempts,
                            tool_timeout_seconds=data.tool_timeout_seconds, queues=data.queues,
                            excluded=appeal.reviewers if appeal is not None else ())
        self._documentation_due: datetime | None = None  # set while the run waits for the provider's answer
        self._answers: list[PendAnswer] = []
        self._ended: RunStatus | None = None  # how a pend loop ended without a decision (unanswered, withdrawn)
        self._notified: set[str] = set()  # ClaimResponses whose notification was started

    @workflow.run
    async def run(self, data: PriorAuthInput) -> PriorAuthResult:
        graph = build_prior_auth_graph()
        state = await self.drive(graph, self._state)
        while _pended(state) and workflow.patched(PEND_ANSWER_PATCH):
            # The provider was asked for documentation: tell its subscriptions, wait for the answer within the
            # extended time frame, then review everything again as a new round (a person if none comes).
            await self._notify_pend_decided(state)
            answer = await self._await_answer(state)
            if answer is None:
                state = self._state
                break
            # _await_answer moved the request's due time to the end of the extended time frame.
            state = state.next_round(answer, self._state.request.decision_due)
            self._state = state
            state = await self.drive(graph, state)
        self._state = state
        await self._notify_pend_decided(state)
        return self._result(state, workflow.now())

    async def _await_answer(self, state: PriorAuthState) -> PendAnswer | None:
        """Wait for ``answer_pend`` until the documentation is due; None (a person told) if it does not come, or
        the run was withdrawn meanwhile (it then ends withdrawn)."""
        request = state.request
        documentation_due, decision_due = extended_due(request.extended_from or request.decision_due, self._policy)
        self._state = state.model_copy(update={"request": request.model_copy(update={
            "decision_due": decision_due, "extended_from": request.extended_from or request.decision_due})})
        self._documentation_due, self._done = documentation_due, False  # a withdrawal is taken while waiting
        self.publish(self._state, "awaiting_documentation")
        taken = len(self._answers)
        try:
            await workflow.wait_condition(
                lambda: len(self._answers) > taken or self._withdrawal is not None,
                timeout=max(0.0, (documentation_due - workflow.now()).total_seconds()))
        except asyncio.TimeoutError:
            pass
        except asyncio.CancelledError:  # cancelled through Temporal while waiting: ends as a cancel does
            await self._end_cancelled()
            raise
        self._documentation_due = None
        if self._withdrawal is not None:
            self._state, self._ended = await self._end_withdrawn(self._state), "withdrawn"
            return None
        if len(self._answers) > taken:
            return self._answers[taken]
        # No documentation in time: never a decision by the clock; a UM reviewer decides by the extended due time.
        await self._follow_up(f"no documentation answered the pend by {documentation_due:%Y-%m-%d %H:%M} UTC; "
                              "review the request with the evidence at hand", key_suffix=f"pend-{state.round}")
        self._done, self._ended = True, "needs_attention"
        self.publish(self._state, "needs_attention")
        return None

    @workflow.update(name="answer_pend")
    def answer_pend(self, answer: PendAnswer) -> PendAnswerResult:
        """The provider's documentation for a pended request (a stored QuestionnaireResponse's id): the request is
        reviewed again with it. Identifiers only; the review checks the stored response again."""
        self._answers.append(answer)
        self._documentation_due = None  # one answer per pend: a second one is refused by the validator
        workflow.logger.info("pend answered", extra={"round": self._state.round + 1})
        return PendAnswerResult(round=self._state.round + 1, decision_due=self._state.request.decision_due)

    @answer_pend.validator
    def _validate_answer(self, answer: PendAnswer) -> None:
        if self._documentation_due is None or self._withdrawal is not None:
            raise ApplicationError("the request is not waiting for documentation (it is under review, decided or "
                                   "closed): ask for its state with Claim/$inquire", type="conflict",
                                   non_retryable=True)
        if workflow.now() > self._documentation_due:
            raise ApplicationError(f"the documentation was due by {self._documentation_due:%Y-%m-%d %H:%M} UTC; "
                                   "a reviewer is deciding the request with the evidence at hand", type="conflict",
                                   non_retryable=True)

    async def _notify_pend_decided(self, state: PriorAuthState) -> None:
        """A ClaimResponse issued after a human decision (the request was pended) is notified to the submitter's
        PAS subscriptions by ``PasNotificationWorkflow`` (``feeds.pas_notify``, started by name: feeds sit above
        workflows), an abandoned child given identifiers only. Behind a patch: runs recorded before it replay
        unchanged."""
        record = _determination(state)
        decided_by_person = bool(record and record.approved_by and record.approval_requests)
        if (record is None or record.status != "executed" or record.result is None
                or not (decided_by_person or state.round) or not workflow.patched("pas-notify-1")):
            return
        reference = record.result.reference
        if reference in self._notified:
            return
        self._notified.add(reference)
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
        verdict = evaluate_determination(edited, facts, self._policy, approved_role=decision.role,
                                         appeal=self._state.request.appeal is not None)
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
            pending_approvals=self._book.pending, actions=[outcome_of(r) for r in [*state.earlier, *state.actions]],
            verdicts=state.verdicts, documentation_due=self._documentation_due, round=state.round)

    def _result(self, state: PriorAuthState, now: datetime) -> PriorAuthResult:
        record = _determination(state)
        issued = record is not None and record.status == "executed"
        return PriorAuthResult(
            workflow_id=state.request.workflow_id,
            status=self._ended or prior_auth_status(state),
            member_pseudonym=self.member_pseudonym(),
            priority=state.request.submission.priority,
            received_at=state.request.appeal.filed_at if state.request.appeal else state.request.submission.received_at,
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
            extended_from=state.request.extended_from,
            documentation=[a.questionnaire_response for a in state.answers],
            earlier_actions=[outcome_of(r) for r in state.earlier],
            appeal_of=state.request.appeal.claim_response if state.request.appeal else None,
        )
