"""The durable agent runtime every program's workflow is built on.

A program's workflow subclasses :class:`AgentRun` and adds its ``@workflow.run``
(build the state, ``await self.drive(graph, state)``, return its result), its
status query and the check of an edited action. The runtime gives it:

* graph invocations that end when the run is finished or *parked* (actions
  awaiting a human or deferred), and a durable wait between them;
* the :class:`~workflows.approvals.ApprovalBook` wired to the ``decide``
  update, its validator, the SLA timer and the decision-ledger activity;
* tool calls as activities, by their declared activity type (:mod:`tools.registry`);
* the search attributes the cross-program inbox reads;
* what the Temporal Web UI and ``temporal workflow show`` say about a run: a summary on every activity it
  schedules (:func:`activity_summary`) and its current details (:meth:`AgentRun.current_details`), in words
  from identifiers and codes only (docs/operations.md);
* an end for every run: a cancel (Temporal) or a ``withdraw`` update closes its pending approvals with
  ``withdrawn`` ledger entries and starts no write after it; a run that cannot go on (a tool failed for good,
  data it cannot use) gives a person a follow-up Task and a ``run_failed`` ledger entry before it fails.

Workflow code only: no I/O here; time is ``workflow.now()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

if TYPE_CHECKING:  # hosts read settings; run code never does
    from runtime.settings import Settings

with workflow.unsafe.imports_passed_through():
    from agents.runtime import ToolFailure
    from guardrails.actions import ProposedAction
    from guardrails.actions import TERMINAL, ActionRecord, ActionStatus
    from guardrails.adverse_content import non_adverse_quote
    from guardrails.approvals import ApprovalDecision, DecisionResult, PendingApproval, ReceivedDecision
    from guardrails.verdicts import GuardrailVerdict
    from runtime import search_attributes as sa
    from runtime.errors import DecisionRefused
    from tools.registry import CREATE_TASK, SEND_OUTREACH, ToolSpec
    from workflows.approvals import LEDGER_APPEND, ApprovalBook, RoutedPolicy

__all__ = ["ActionOutcome", "ActivityQueues", "AgentRun", "activity_queues", "activity_summary", "ledger_summary",
           "ParkableState", "WithdrawRequest", "WithdrawResult", "outcome_of"]

S = TypeVar("S", bound=BaseModel)

# Graph steps per invocation: a handful of nodes run before the graph finishes or parks.
_GRAPH_STEP_LIMIT = 50


class ActionOutcome(BaseModel):
    action_id: str
    tool: str
    status: ActionStatus
    digest: str = Field(description="Digest of the action as executed or last proposed.")
    reference: str | None = Field(default=None, description="FHIR reference written, if executed.")
    reason: str | None = None
    approved_by: str | None = None
    approver_role: str | None = None
    edited: bool = False
    confidence: float


def outcome_of(record: ActionRecord) -> ActionOutcome:
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


class ParkableState(Protocol):
    """What the runtime reads of a program's graph state."""

    @property
    def finished(self) -> bool: ...

    @property
    def next_wake_up(self) -> datetime | None: ...


class ActivityQueues(BaseModel):
    """Task queues of the rate-limited activities; None runs them on the workflow's own queue.

    In the run's input, so workflow code routes deterministically; set from settings when a rate limit is
    configured (:meth:`runtime.settings.Settings.activity_queues`)."""

    model: str | None = Field(default=None, description="Planner and recommender (model) calls.")
    messages: str | None = Field(default=None, description="Messages to members.")


def activity_queues(settings: Settings) -> ActivityQueues:
    """Where rate-limited activities run: their own queue when a rate (or a queue name) is set."""
    model = settings.model_task_queue or (
        f"{settings.task_queue}-model" if settings.model_activities_per_second else None)
    messages = settings.messages_task_queue or (
        f"{settings.task_queue}-messages" if settings.messages_per_second else None)
    return ActivityQueues(model=model, messages=messages)


class WithdrawRequest(BaseModel):
    """The ``withdraw`` update's input: the run's source takes it back (e.g. an ADT A13 cancels the discharge)."""

    actor: str = Field(min_length=1, max_length=120, description="Who withdraws: a user id or adt:<facility>.")
    reason: str = Field(min_length=1, max_length=500, description="Why, e.g. 'A13 cancel discharge'.")
    source: str | None = Field(default=None, max_length=200, description="Where it came from (sending facility).")


class WithdrawResult(BaseModel):
    closed: list[str] = Field(description="Approval ids closed unexecuted (each has a withdrawn ledger entry).")
    status: str


_WITHDRAWN = "Withdrawn"
"""ToolFailure type of a tool call refused because the run was withdrawn: nothing was started."""
_FOLLOW_UP_TIMEOUT = timedelta(hours=1)
"""How long a failed run keeps trying to give a person its follow-up Task (the store may be down)."""
_FOLLOW_UP_PATCH = "follow-up-task-1"
"""Patch marker of the follow-up Tasks of failed runs and failed actions: histories recorded before them replay."""


_SUMMARY_LIMIT = 200
"""Activity summaries are one line in the Web UI's timeline."""
_DETAIL_ACTIONS = 12
"""Current details list at most this many actions (then a count of the rest)."""


def activity_summary(tool: ToolSpec, data: BaseModel, *, queue: str | None = None) -> str:
    """What a tool activity does, for the Web UI and ``temporal workflow show`` (user metadata of the
    ActivityTaskScheduled event): its tool and kind, and for a write the action id, channel and whether a human
    approved it. Words from identifiers and codes only: never a member id, name, date, message or clinical
    value: whoever may read the run's history in the Web UI reads its summaries."""
    words = [f"{tool.name} ({tool.kind})"]
    key = getattr(data, "idempotency_key", None)
    if isinstance(key, str) and key:
        action = key.rsplit("/", 1)[-1]
        if _safe_word(action):
            words.append(f"action {action}")
    arguments = getattr(data, "arguments", None)
    channel = getattr(arguments, "channel", None)
    if isinstance(channel, str) and _safe_word(channel):
        words.append(f"via {channel}")
    if tool.kind == "write":
        words.append("approved by a person" if getattr(data, "approved_by", None) or getattr(data, "approval", None)
                     else "no approval needed")
    if queue:
        words.append(f"on queue {queue}")
    return "; ".join(words)[:_SUMMARY_LIMIT]


def ledger_summary(events: Sequence[str]) -> str:
    """The ``ledger.append`` activity's summary: how many entries of which events (codes only)."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event] = counts.get(event, 0) + 1
    kinds = ", ".join(f"{n} {event}" for event, n in sorted(counts.items()))
    return f"{LEDGER_APPEND.name} (ledger): {len(events)} decision-ledger entries ({kinds})"[:_SUMMARY_LIMIT]


def _safe_word(text: str) -> bool:
    """An identifier or code: ASCII letters, digits, dashes, dots and underscores, short."""
    return 0 < len(text) <= 40 and all(c.isascii() and (c.isalnum() or c in "-._") for c in text)


class AgentRun:
    """Base class of program workflows (not a workflow itself)."""

    def _start_runtime(self, policy: RoutedPolicy, *, initiated_by: str, tool_attempts: int,
                       tool_timeout_seconds: float, queues: ActivityQueues | None = None,
                       excluded: Sequence[str] = ()) -> None:
        """Call from the subclass's ``@workflow.init``."""
        self._queues = queues or ActivityQueues()
        # Ledger entries and signatures name this run: agent runs never continue-as-new, so the run id is the
        # first-execution run id, and a run restarted under the same workflow id is another run.
        self._book = ApprovalBook(policy, initiated_by=initiated_by, run_id=workflow.info().run_id, excluded=excluded)
        self._withdrawal: WithdrawRequest | None = None
        self._closed: list[str] = []
        self._done = False  # the run's last ledger flush has started
        self._status = "starting"
        self._search_attributes: dict[str, Any] = {}
        self._tool_timeout = timedelta(seconds=tool_timeout_seconds)
        self._tool_retry = RetryPolicy(maximum_attempts=tool_attempts, maximum_interval=timedelta(minutes=1))

    # --- what a program provides --------------------------------------------------
    def run_status(self, state: Any) -> str:
        """The run's status word for this state."""
        raise NotImplementedError

    def member_pseudonym(self) -> str | None:
        """The member the run is about (a search attribute), once known."""
        raise NotImplementedError

    def check_edit(self, decision: ApprovalDecision, item: PendingApproval) -> None:
        """Raise :class:`DecisionRefused` unless the edited arguments pass the program's guardrails."""
        raise NotImplementedError

    def edited_action(self, actions: list[ActionRecord], decision: ApprovalDecision, item: PendingApproval
                      ) -> ProposedAction:
        """The action ``item`` asks about, with the reviewer's edited arguments (for :meth:`check_edit`)."""
        action = next(r.action for r in actions if r.action.action_id == item.action_id)
        return action.model_copy(update={"arguments": decision.arguments})

    @staticmethod
    def refuse_edit(verdict: GuardrailVerdict) -> None:
        """Refuse an edit the program's guardrails block, or that needs a more senior role than the editor's."""
        if verdict.decision == "block":
            raise DecisionRefused("invalid", f"the edited action would be blocked: {'; '.join(verdict.reasons)}")
        if verdict.decision == "require_approval":
            raise DecisionRefused("forbidden", (
                f"the edited action needs role {verdict.required_role}: {'; '.join(verdict.reasons)}"))

    def follow_up_task(self, reason: str, key: str) -> BaseModel:
        """The ``create_task`` input of the human follow-up for a run that cannot go on (idempotency ``key``)."""
        raise NotImplementedError

    # --- the loop -------------------------------------------------------------------
    async def drive(self, graph: Any, state: S) -> S:
        """Invoke the graph until the run is finished; wait durably whenever it parks.

        Every way out is accounted for: finished; withdrawn (the state's open actions end ``withdrawn``, a person
        confirms any approval it closed); cancelled (ledger entries, then CANCELLED); or failed after a person got
        a follow-up Task. Once the run's last ledger flush starts, a ``withdraw`` is refused (it would never be
        written)."""
        try:
            while True:
                before = state
                try:
                    state = await self._step(graph, state)
                except ApplicationError:
                    if self._withdrawal is None:
                        raise
                    state = before  # a read or plan refused because the run was withdrawn: nothing was written
                await self._flush_ledger()
                if self._withdrawal is not None:
                    return await self._end_withdrawn(state)
                if state.finished:  # type: ignore[attr-defined]
                    failed = [r for r in state.actions if r.status == "failed"]  # type: ignore[attr-defined]
                    # Patched: runs recorded before this follow-up replay as they ran.
                    if failed and workflow.patched(_FOLLOW_UP_PATCH):
                        # An action that could not be written: a person follows up, the ledger says so.
                        await self._follow_up("; ".join(f"{r.action.action_id} ({r.action.tool}) failed: {r.reason}"
                                                        for r in failed))
                    return await self._closing(state)
                self.publish(state, self.run_status(state))
                # Parked: wait durably for decisions, SLA clocks or the earliest deferral.
                received = await self._wait(state)
                if self._withdrawal is not None:
                    return await self._end_withdrawn(state)
                state = state.model_copy(update={"inbox": received})
        except asyncio.CancelledError:
            await self._end_cancelled()
            raise
        except ApplicationError as failure:
            try:
                if workflow.patched(_FOLLOW_UP_PATCH):
                    await self._follow_up(f"{failure.type or 'ApplicationError'}: {failure.message}")
            except asyncio.CancelledError:  # cancelled while telling a person: still end as a cancel does
                await self._end_cancelled()
                raise
            self._done = True
            self._status = "needs_attention"
            self._sync_search_attributes()
            raise

    async def _closing(self, state: S) -> S:
        """The run's last ledger flush: no withdrawal is taken after it starts (validator), so none is lost."""
        self._done = True
        await self._flush_ledger()
        return state

    def check_may_start(self, tool: ToolSpec) -> None:
        """No activity starts once the run is cancelled (CancelledError) or withdrawn (ToolFailure)."""
        self.raise_if_cancelled()
        if self._withdrawal is not None:
            raise ToolFailure(_WITHDRAWN, f"the run was withdrawn by {self._withdrawal.actor}; {tool.name} was "
                                          "not started")

    def raise_if_cancelled(self) -> None:
        """A cancel delivered while an activity finished (its result kept) must still stop the run here."""
        if workflow.cancellation_reason() is not None:
            raise asyncio.CancelledError(workflow.cancellation_reason())

    async def _end_withdrawn(self, state: S) -> S:
        request = self._withdrawal
        if request is None:  # only called once a withdrawal was taken
            return await self._closing(state)
        actions = [r if r.status in TERMINAL and not _refused_as_withdrawn(r)
                   else r.model_copy(update={"status": "withdrawn",
                                             "reason": f"withdrawn by {request.actor}: {request.reason}"})
                   for r in state.actions]  # type: ignore[attr-defined]
        state = state.model_copy(update={"actions": actions})
        if self._closed:
            # Approvals closed unexecuted on someone's word (the withdraw update is not signed): a person confirms.
            await self._follow_up(f"withdrawn by {request.actor} ({request.reason}); approval(s) "
                                  f"{', '.join(self._closed)} closed unexecuted: confirm with the source",
                                  key_suffix="withdrawn")
        self.publish(state, "withdrawn")
        return await self._closing(state)

    async def _end_cancelled(self) -> None:
        reason = workflow.cancellation_reason() or "cancelled through Temporal"
        if self._withdrawal is None:
            self._closed = self._book.withdraw("temporal-cancel", f"cancelled: {reason}", workflow.now(),
                                               workflow_id=workflow.info().workflow_id)
        self._done = True
        workflow.logger.info("run cancelled", extra={"closed": len(self._closed)})
        self._status = "withdrawn"
        self._sync_search_attributes()
        await self._flush_ledger(shielded=True)

    async def _follow_up(self, reason: str, *, key_suffix: str = "run-failure") -> None:
        """The run cannot go on, an action could not be written, or approvals were withdrawn: a person gets a
        follow-up Task and the ledger an entry naming it. A cancel arriving meanwhile lets the write finish
        (so the ledger says truly whether the Task exists)."""
        info = workflow.info()
        reason = reason[:290]
        follow_up = None
        try:
            created = await workflow.execute_activity(
                # The worker reads every field of a Task for adverse words: the failure is quoted without them.
                CREATE_TASK.name, self.follow_up_task(non_adverse_quote(reason, 290),
                                                          f"{info.workflow_id}/{info.run_id}/{key_suffix}"),
                result_type=CREATE_TASK.result_type,
                summary=f"{CREATE_TASK.name} (write): follow-up Task for a person ({key_suffix})",
                start_to_close_timeout=self._tool_timeout, schedule_to_close_timeout=_FOLLOW_UP_TIMEOUT,
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
            follow_up = created.reference
        except ActivityError as err:
            workflow.logger.error("a follow-up Task could not be written", extra={"error": str(err.cause or err)})
        self._book.record_failure(reason, workflow.now(), workflow_id=info.workflow_id, follow_up=follow_up)
        await self._flush_ledger()

    async def _step(self, graph: Any, state: S) -> S:
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
        return type(state).model_validate(final)

    async def _wait(self, state: ParkableState) -> list[ReceivedDecision]:
        """Until a final decision or expiry arrives, or a deferral is due; reminders and escalations on the way."""
        book = self._book
        while not book.has_outcomes:
            self.raise_if_cancelled()
            now = workflow.now()
            deferral = state.next_wake_up
            if deferral is not None and deferral <= now:
                break
            clock = book.next_wake_up()
            wake = min([t for t in (deferral, clock) if t is not None], default=None)
            # Every accepted decision adds an answer; one that changes a pending item re-arms the clocks.
            answers = book.answers
            if wake is None or wake > now:
                try:
                    await workflow.wait_condition(
                        lambda: (book.has_outcomes or book.answers != answers or self._withdrawal is not None
                                 or workflow.cancellation_reason() is not None),
                        timeout=None if wake is None else (wake - now).total_seconds())
                except asyncio.TimeoutError:
                    pass
            if self._withdrawal is not None:
                break
            book.tick(workflow.now())
            await self._flush_ledger()
            self._sync_search_attributes()
        return book.take_decided()

    # --- AgentRuntime (what graph nodes call) -------------------------------------------
    def now(self) -> datetime:
        return workflow.now()

    def queue_for(self, tool: ToolSpec) -> str | None:
        """The rate-limited queue of this tool's activity, if it has one (no schedule-to-start timeout: a
        burst waits in the queue, it does not fail)."""
        if tool.kind == "planner":
            return self._queues.model
        if tool.name == SEND_OUTREACH.name:
            return self._queues.messages
        return None

    async def call_tool(self, tool: ToolSpec, data: BaseModel, *, own_queue: bool = False) -> Any:
        """Run a tool as its activity; a failure for good becomes :class:`ToolFailure`.

        ``own_queue``: on the workflow's own task queue even if the tool has a rate-limited one (a call that
        does not reach the rate-limited resource, e.g. the offline rules planning when the model could not).

        No tool starts once the run is cancelled or withdrawn. A write already running when a cancel arrives
        is waited for (WAIT_CANCELLATION_COMPLETED), so what it wrote is known, never reported as failed."""
        self.check_may_start(tool)
        write = tool.kind == "write"
        queue = None if own_queue else self.queue_for(tool)
        try:
            return await workflow.execute_activity(
                tool.name, data, result_type=tool.result_type, summary=activity_summary(tool, data, queue=queue),
                start_to_close_timeout=self._tool_timeout, retry_policy=self._tool_retry,
                task_queue=queue,
                heartbeat_timeout=tool.heartbeat_timeout,
                cancellation_type=(ActivityCancellationType.WAIT_CANCELLATION_COMPLETED if write
                                   else ActivityCancellationType.TRY_CANCEL))
        except ActivityError as err:
            if workflow.cancellation_reason() is not None or is_cancelled_exception(err):
                raise asyncio.CancelledError(workflow.cancellation_reason()) from None
            cause = err.cause
            if isinstance(cause, ApplicationError):
                raise ToolFailure(cause.type or "ApplicationError", cause.message) from None
            raise ToolFailure("ToolUnavailable", f"{tool.name} failed after retries: {cause or err}") from None

    def idempotency_key(self, action_id: str) -> str:
        """``workflow id/run id/action id``: retries of a write return its first resource, and a run restarted
        under the same workflow id writes its own (never reports run 1's resource as its own write)."""
        info = workflow.info()
        return f"{info.workflow_id}/{info.run_id}/{action_id}"

    def request_approvals(self, items: list[PendingApproval]) -> None:
        self._book.open(items, workflow.now())
        for item in items:
            workflow.logger.info("approval requested", extra={
                "approval_id": item.approval_id, "tool": item.tool, "queue": item.queue,
                "required_role": item.required_role, "digest": item.digest[:12]})

    def executed_automatically(self, action: ProposedAction) -> None:
        """Every program's automatic executions pass here: a deterministic share goes to quality review (the
        ``sampled`` entry reaches the ledger with the step's other entries); the action is not held."""
        if self._book.sample(workflow.info().workflow_id, action, workflow.now()):
            workflow.logger.info("action sampled for quality review", extra={
                "action_id": action.action_id, "tool": action.tool, "digest": action.digest[:12]})

    def publish(self, state: Any, status: str) -> None:
        """The run's status changed: search attributes and the Web UI's current details follow."""
        self._state, self._status = state, status
        self._sync_search_attributes()

    def current_details(self) -> str:
        """The run's current details for the Temporal Web UI (markdown): status, member pseudonym, pending
        approvals by role and queue, actions by id, tool and status. Identifiers and codes only."""
        lines = [f"**status**: {self._status}"]
        member = self.member_pseudonym()
        if member is not None:
            lines.append(f"**member**: {member}")
        pending = self._book.pending
        if pending:
            roles = ", ".join(sorted({p.required_role for p in pending}))
            queues = ", ".join(sorted({p.queue for p in pending}))
            lines.append(f"**pending approvals**: {len(pending)} (role {roles}; queue {queues})")
        else:
            lines.append("**pending approvals**: 0")
        actions = list(getattr(getattr(self, "_state", None), "actions", None) or [])
        if actions:
            lines.append(f"**actions**: {len(actions)}")
            lines += [f"- {r.action.action_id} {r.action.tool}: {r.status}" for r in actions[:_DETAIL_ACTIONS]]
            if len(actions) > _DETAIL_ACTIONS:
                lines.append(f"- and {len(actions) - _DETAIL_ACTIONS} more")
        if self._withdrawal is not None:
            lines.append(f"**withdrawn**: {len(self._closed)} approval(s) closed")
        return "\n".join(lines)

    # --- decision ledger ----------------------------------------------------------------
    async def _flush_ledger(self, *, shielded: bool = False) -> None:
        """Hand new entries to the ledger activity; a cancel arriving meanwhile lets the append finish first
        (``shielded``: the run is already ending cancelled, so do not raise again)."""
        batch = self._book.take_ledger()
        if not batch.entries:
            return
        await workflow.execute_activity(
            LEDGER_APPEND.name, batch, result_type=LEDGER_APPEND.result_type,
            summary=ledger_summary([e.event for e in batch.entries]),
            start_to_close_timeout=timedelta(seconds=30),
            # The ledger is the 6-year record: keep trying (backing off) rather than lose an entry.
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        if not shielded:
            self.raise_if_cancelled()

    # --- approvals ----------------------------------------------------------------------
    @workflow.update(name="decide")
    def decide(self, decision: ApprovalDecision) -> DecisionResult:
        """Apply a supervisor's decision to a pending approval (validated first)."""
        result = self._book.apply(decision, workflow.now())
        self._sync_search_attributes()
        workflow.logger.info("approval decided", extra={
            "approval_id": decision.approval_id, "decision": decision.decision, "outcome": result.outcome,
            "role": decision.role})
        return result

    @decide.validator
    def _validate_decide(self, decision: ApprovalDecision) -> None:
        try:
            self._book.validate(decision, check_edit=self.check_edit, workflow_id=workflow.info().workflow_id,
                                now=workflow.now())
        except DecisionRefused as refused:
            raise ApplicationError(str(refused), type=refused.code, non_retryable=True) from None

    @workflow.update(name="withdraw")
    def withdraw(self, request: WithdrawRequest) -> WithdrawResult:
        """The run's source takes it back: pending approvals close unexecuted (ledger: withdrawn, who and why),
        no tool starts after this, and the run ends ``withdrawn``. A repeat answers the first result."""
        if self._withdrawal is None:
            self._withdrawal = request
            reason = request.reason + (f" (from {request.source})" if request.source else "")
            self._closed = self._book.withdraw(request.actor, reason, workflow.now(),
                                               workflow_id=workflow.info().workflow_id)
            self._status = "withdrawn"
            self._sync_search_attributes()
            workflow.logger.info("run withdrawn", extra={"closed": len(self._closed)})
        return WithdrawResult(closed=self._closed, status="withdrawn")

    @withdraw.validator
    def _validate_withdraw(self, request: WithdrawRequest) -> None:
        if self._withdrawal is None and self._done:
            raise ApplicationError("the run has finished: there is nothing left to withdraw", type="conflict",
                                   non_retryable=True)

    @workflow.query(name="approvals")
    def approvals(self) -> list[PendingApproval]:
        """The run's pending approvals (what the cross-program inbox reads)."""
        return self._book.pending

    @workflow.query(name="decision_key_ids")
    def decision_key_ids(self) -> list[str]:
        """The ids of the keys this run accepts decisions from (empty: unsigned decisions), for the signer."""
        return self._book.decision_key_ids

    # --- search attributes -----------------------------------------------------------------
    def _sync_search_attributes(self) -> None:
        """Search attributes (a command, only when one changed) and the current details (no command: the Web UI
        reads them with the ``__temporal_workflow_metadata`` query), on every change of status or approvals."""
        workflow.set_current_details(self.current_details())
        pending = self._book.pending
        wanted: dict[str, Any] = {
            sa.STATUS.name: self._status,
            sa.PENDING_APPROVALS.name: len(pending),
            sa.APPROVAL_ROLES.name: sorted({p.required_role for p in pending}),
            sa.QUEUES.name: sorted({p.queue for p in pending}),
            sa.PRIORITY.name: ("urgent" if any(p.priority == "urgent" for p in pending)
                               else "routine" if pending else None),
            sa.SLA_DEADLINE.name: min((p.sla_deadline for p in pending), default=None),
        }
        member = self.member_pseudonym()
        if member is not None:
            wanted[sa.MEMBER.name] = member
            # Known from the same step as the member, so they join the member's upsert: no new command, and
            # histories recorded before these attributes replay unchanged.
            wanted.update({k: v for k, v in self.episode_attributes().items() if v is not None})
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

    def episode_attributes(self) -> dict[str, Any]:
        """Search attributes of the episode a program's run is about (name: value), known with the member: what
        `careloom runs list` shows beside it. None by default."""
        return {}


def _refused_as_withdrawn(record: ActionRecord) -> bool:
    """A write refused (not started) because the run was withdrawn: it ends withdrawn, not failed."""
    return record.status == "failed" and (record.reason or "").startswith(f"{_WITHDRAWN}:")
