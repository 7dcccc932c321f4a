"""Typed facts read back from any careloom program's run history, with no database and no worker.

Payloads are decoded with the project's data converter into the same pydantic
models the workflow used, so audit and what-if see exactly what ran.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowHistory

from agents.planner import PlannerOutput
from guardrails.actions import ProposedAction
from guardrails.approvals import ApprovalDecision, DecisionResult
from guardrails.facts import RunFacts
from guardrails.verdicts import GuardrailVerdict
from runtime.codec import PayloadEncryptionCodec
from runtime.data_converter import DATA_CONVERTER
from store.ledger_entries import LedgerEntry
from tools.pas_models import PendAnswer
from tools.registry import CHECK_ELIGIBILITY, GET_CLINICAL_CONTEXT, LOOKUP_MEMBER, SCORE_READMISSION_RISK
from workflows.agent_run import WithdrawRequest
from workflows.approvals import LEDGER_APPEND
from workflows.programs import ACTIVITY_TYPES
from workflows.programs import OUTREACH, PLANNER_ACTIVITIES, Program, program_of_workflow_type

__all__ = ["ActivityCall", "DecisionEvent", "RunRecord", "read_run"]

@dataclass
class ActivityCall:
    name: str
    scheduled_at: datetime
    input: Any
    finished_at: datetime | None = None
    result: Any = None
    failure: str | None = None


@dataclass
class DecisionEvent:
    at: datetime
    decision: ApprovalDecision
    result: DecisionResult | None = None


@dataclass
class RunRecord:
    """Everything the audit and what-if need, read from one history."""

    workflow_id: str
    started_at: datetime
    program: Program
    input: Any  # the program's workflow input: OutreachInput, PriorAuthInput
    calls: list[ActivityCall] = field(default_factory=list)
    decisions: list[DecisionEvent] = field(default_factory=list)
    timers: list[tuple[datetime, float]] = field(default_factory=list)
    closed_at: datetime | None = None
    result: Any = None
    closed_as: str | None = None
    failure: str | None = None
    run_id: str | None = None
    closed_by: str | None = None  # terminated runs: the identity that terminated it
    withdrawals: list[Any] = field(default_factory=list)  # accepted ``withdraw`` updates (WithdrawRequest)
    pend_answers: list[Any] = field(default_factory=list)  # accepted ``answer_pend`` updates (PendAnswer)

    def first_result(self, name: str) -> Any:
        return next((c.result for c in self.calls if c.name == name and c.result is not None), None)

    @property
    def facts(self) -> Any:
        """What the planner was given (outreach: RunFacts; prior auth: PriorAuthFacts), or None."""
        planned = next((c for c in self.calls if c.name in PLANNER_ACTIVITIES), None)
        if planned is not None:
            return planned.input.facts
        if self.program is not OUTREACH:
            return None
        member = self.first_result(LOOKUP_MEMBER.name)
        clinical = self.first_result(GET_CLINICAL_CONTEXT.name)
        eligibility = self.first_result(CHECK_ELIGIBILITY.name)
        risk = self.first_result(SCORE_READMISSION_RISK.name)
        if None in (member, clinical, eligibility, risk):
            return None
        return RunFacts(member=member, clinical=clinical, eligibility=eligibility, risk=risk)

    @property
    def plan(self) -> tuple[datetime, PlannerOutput] | None:
        planned = next((c for c in self.calls if c.name in PLANNER_ACTIVITIES and c.result is not None), None)
        return (planned.finished_at or planned.scheduled_at, planned.result) if planned else None

    def planned_verdicts(self, policy: Any) -> list[tuple[ProposedAction, GuardrailVerdict]]:
        """Each planned proposal with the verdict ``policy`` gives it at planning time (none before a plan).

        Deterministic: the recorded facts and proposals, no side effects, no model call.
        """
        facts, plan = self.facts, self.plan
        if facts is None or plan is None:
            return []
        at, output = plan
        return [(p, self.program.judge(p, facts, policy, at, self.input)) for p in output.proposals]

    @property
    def ledger_entries(self) -> list[LedgerEntry]:
        return [e for c in self.calls if c.name == LEDGER_APPEND.name for e in c.input.entries]

    @property
    def closed_requested(self) -> bool:
        """Closed from outside (terminated or cancelled): no workflow code ran to close its approvals."""
        return self.closed_as in ("terminated", "cancelled")


_CODEC: ContextVar[PayloadEncryptionCodec | None] = ContextVar("history_codec", default=None)


def _decode(payloads: Payloads, kind: type[Any]) -> Any:
    raw = list(payloads.payloads)
    codec = _CODEC.get()
    if codec is not None:
        raw = codec.decode_sync(raw)
    values = DATA_CONVERTER.payload_converter.from_payloads(raw, [kind])
    return values[0] if values else None


def _message(failure: Failure) -> str:
    """A failure's message; failures written with encoded attributes keep it in an (encrypted) payload."""
    if failure.HasField("encoded_attributes"):
        attributes = _decode(Payloads(payloads=[failure.encoded_attributes]), dict) or {}
        return str(attributes.get("message", failure.message))
    return failure.message


def read_run(history: WorkflowHistory, codec: PayloadEncryptionCodec | None = None) -> RunRecord:
    """Decode a history into a RunRecord; ValueError if it is not a history of a careloom program.

    ``codec`` decrypts histories written with payload encryption (PayloadKeyError without the key).
    """
    token = _CODEC.set(codec)
    try:
        return _read_run(history)
    finally:
        _CODEC.reset(token)


def _read_run(history: WorkflowHistory) -> RunRecord:
    events = list(history.events)
    first = events[0]
    if first.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        raise ValueError("the history does not start with WorkflowExecutionStarted")
    started = first.workflow_execution_started_event_attributes
    program = program_of_workflow_type(started.workflow_type.name)
    if program is None:
        raise ValueError(f"a {started.workflow_type.name} history is not a careloom program's run")
    record = RunRecord(workflow_id=history.workflow_id, started_at=first.event_time.ToDatetime(tzinfo=UTC),
                       program=program, input=_decode(started.input, program.input_type),
                       run_id=started.original_execution_run_id or None)
    scheduled: dict[int, ActivityCall] = {}
    updates: dict[str, DecisionEvent] = {}
    for event in events[1:]:
        at = event.event_time.ToDatetime(tzinfo=UTC)
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            name = attrs.activity_type.name
            input_type = ACTIVITY_TYPES.get(name, (dict, dict))[0]
            call = ActivityCall(name=name, scheduled_at=at, input=_decode(attrs.input, input_type))
            scheduled[event.event_id] = call
            record.calls.append(call)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            call = scheduled[attrs.scheduled_event_id]
            call.finished_at = at
            call.result = _decode(attrs.result, ACTIVITY_TYPES.get(call.name, (dict, dict))[1])
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
            attrs = event.activity_task_failed_event_attributes
            call = scheduled[attrs.scheduled_event_id]
            call.finished_at, call.failure = at, _message(attrs.failure)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            attrs = event.workflow_execution_update_accepted_event_attributes
            request = attrs.accepted_request
            if request.input.name == "withdraw":
                record.withdrawals.append(_decode(request.input.args, WithdrawRequest))
                continue
            if request.input.name == "answer_pend":
                record.pend_answers.append(_decode(request.input.args, PendAnswer))
                continue
            decision = _decode(request.input.args, ApprovalDecision)
            updates[attrs.protocol_instance_id] = DecisionEvent(at=at, decision=decision)
            record.decisions.append(updates[attrs.protocol_instance_id])
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            attrs = event.workflow_execution_update_completed_event_attributes
            found = updates.get(attrs.meta.update_id) or next(
                (d for d in record.decisions if d.result is None), None)
            if found is not None and attrs.outcome.HasField("success"):
                found.result = _decode(attrs.outcome.success, DecisionResult)
        elif kind == EventType.EVENT_TYPE_TIMER_STARTED:
            attrs = event.timer_started_event_attributes
            record.timers.append((at, attrs.start_to_fire_timeout.ToTimedelta().total_seconds()))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            record.closed_at, record.closed_as = at, "completed"
            record.result = _decode(event.workflow_execution_completed_event_attributes.result, program.result_type)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            record.closed_at, record.closed_as = at, "failed"
            record.failure = _message(event.workflow_execution_failed_event_attributes.failure)
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
            record.closed_at, record.closed_as = at, "terminated"
            record.failure = event.workflow_execution_terminated_event_attributes.reason
            record.closed_by = event.workflow_execution_terminated_event_attributes.identity or None
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
            record.closed_at, record.closed_as = at, "cancelled"
    return record
