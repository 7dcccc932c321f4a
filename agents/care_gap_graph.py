"""The care-gap closure agent: a LangGraph ``StateGraph`` executed inside the workflow.

    first step:  START → gather_facts → plan → guard → execute → (record_outcome → END | END parked)
    on resume:   START → apply_decisions → guard → execute → …

``gather_facts`` reads the member (minimum necessary), coverage today and the member's care gaps for the
measurement period (the CQL measures, evaluated in the activity over the member's records). ``plan`` asks the
planner for a reminder to the member, a scheduling Task for a care coordinator and a notification Task for the
PCP's office; the guardrails (consent, TCPA hours in the member's zone, channel, no clinical words in a
message, coverage in force) allow, defer, block or send to a human. A member with no open gap gets no plan.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import cache
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel

from agents.care_gap_planner import PLAN_CARE_GAPS, GapPlannerInput
from agents.care_gap_state import CareGapState
from agents.runtime import AgentRuntime, ToolFailure, runtime_of
from agents.steps import apply_decisions, contact_refusals, execute_ready, guard_actions
from guardrails.actions import TERMINAL, ActionRecord
from guardrails.approvals import CareGapReviewContext, PendingApproval
from guardrails.care_gap_rules import evaluate_gap_action
from guardrails.facts import CareGapFacts
from guardrails.outreach_rules import service_effect
from guardrails.policy import Role
from guardrails.routing import clock_for
from runtime.search_attributes import RunStatus
from tools.care_gap_models import EvaluateGapsInput
from tools.eligibility import EligibilityInput
from tools.member import LookupMemberInput
from tools.outreach import SendOutreachInput
from tools.registry import CHECK_ELIGIBILITY, CREATE_TASK, EVALUATE_GAPS, LOOKUP_MEMBER, SEND_OUTREACH, write_tool_for
from tools.tasks import CreateTaskArgs, CreateTaskInput

__all__ = ["PROGRAM_LABEL", "build_care_gap_graph", "care_gap_status", "evaluate_input"]

PROGRAM_LABEL = "care-gap closure"
"""The category of the program's messages (``Communication.category``)."""


def care_gap_status(state: CareGapState) -> RunStatus:
    """The run's status word, derived from its state."""
    statuses = {r.status for r in state.actions}
    if "withdrawn" in statuses:
        return "withdrawn"
    if "awaiting_approval" in statuses:
        return "awaiting_approval"
    if "deferred" in statuses:
        return "deferred"
    if state.facts is not None and not state.facts.eligibility.inforce:
        return "ineligible"
    if state.planner is not None and statuses <= TERMINAL:
        return "needs_attention" if statuses & {"failed", "expired"} else "completed"
    return "executing" if state.planner is not None else "gathering"


def evaluate_input(state: CareGapState) -> EvaluateGapsInput:
    req = state.request
    return EvaluateGapsInput(member_id=req.member_id, period_start=req.period_start, period_end=req.period_end,
                             measure_ids=req.measure_ids)


def _runtime(config: RunnableConfig) -> AgentRuntime:
    return runtime_of(config)


def _facts(state: CareGapState) -> CareGapFacts:
    if state.facts is None:
        raise ToolFailure("MissingFacts", "the graph reached planning without facts")
    return state.facts


async def gather_facts(state: CareGapState, config: RunnableConfig) -> Command[Literal["plan", "record_outcome"]]:
    rt = _runtime(config)
    req = state.request
    rt.publish(state, "gathering")
    member, eligibility, review = await asyncio.gather(
        rt.call_tool(LOOKUP_MEMBER, LookupMemberInput(member_id=req.member_id)),
        rt.call_tool(CHECK_ELIGIBILITY, EligibilityInput(member_id=req.member_id, on_date=rt.now().date())),
        rt.call_tool(EVALUATE_GAPS, evaluate_input(state)),
    )
    facts = CareGapFacts(member=member, eligibility=eligibility, review=review)
    if not eligibility.inforce:  # nothing is planned for a member whose coverage is not in force
        return Command(update={"facts": facts, "planner": "none: coverage not in force"}, goto="record_outcome")
    return Command(update={"facts": facts}, goto="plan")


async def plan(state: CareGapState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    rt.publish(state, "planning")
    facts = _facts(state)
    if not facts.review.open_gaps:
        return {"planner": "none: no open gap", "actions": []}
    out = await rt.call_tool(PLAN_CARE_GAPS, GapPlannerInput(workflow_id=state.request.workflow_id, facts=facts,
                                                             round=state.round, now=rt.now()))
    proposals = out.proposals
    if state.round:
        # A later round's actions are new actions: their own approvals, idempotency keys and writes.
        proposals = [p.model_copy(update={"action_id": f"r{state.round}-{p.action_id}"[:40]}) for p in proposals]
    ids = [p.action_id for p in proposals]
    if len(set(ids)) != len(ids):
        raise ToolFailure("InvalidPlan", f"planner {out.planner} proposed an action id twice: {ids}")
    return {"planner": out.planner, "planner_usage": out.usage,
            "actions": [ActionRecord(action=p, proposed_digest=p.digest) for p in proposals]}


async def guard(state: CareGapState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    facts, policy, now = _facts(state), state.request.policy, rt.now()
    actions, verdicts = guard_actions(
        rt, state.actions, state.verdicts,
        judge=lambda r: evaluate_gap_action(r.action, facts, policy, now=now, approved_role=r.approver_role),
        describe=lambda r, reasons, role: _pending(state, r, reasons, role, now))
    return {"actions": actions, "verdicts": verdicts}


async def execute(state: CareGapState, config: RunnableConfig) -> Command[Literal["record_outcome", "__end__"]]:
    rt = _runtime(config)
    if any(r.status == "ready" for r in state.actions):
        rt.publish(state, "executing")

    policy = state.request.policy
    on_failure = contact_refusals(rt.now, _facts(state).member.time_zone, start=policy.contact_window_start,
                                  end=policy.contact_window_end)
    actions = await execute_ready(rt, state.actions,
                                  write_call=lambda r: _write_call(state, r, rt.idempotency_key(r.action.action_id),
                                                                   rt.now()),
                                  on_failure=on_failure)
    finished = state.model_copy(update={"actions": actions}).finished
    return Command(update={"actions": actions}, goto="record_outcome" if finished else END)



async def record_outcome(state: CareGapState, config: RunnableConfig) -> dict[str, Any]:
    _runtime(config).publish(state, care_gap_status(state))
    return {}


async def entry(state: CareGapState) -> str:
    return "gather_facts" if state.facts is None else "apply_decisions"


@cache
def build_care_gap_graph() -> Any:
    """The compiled graph, built once per process (nodes find their runtime in the config)."""
    graph = StateGraph(CareGapState)
    graph.add_node("gather_facts", gather_facts)
    graph.add_node("plan", plan)
    graph.add_node("guard", guard)
    graph.add_node("execute", execute)
    graph.add_node("apply_decisions", apply_decisions)
    graph.add_node("record_outcome", record_outcome)
    graph.add_conditional_edges(START, entry, ["gather_facts", "apply_decisions"])
    graph.add_edge("plan", "guard")
    graph.add_edge("guard", "execute")
    graph.add_edge("apply_decisions", "guard")
    graph.add_edge("record_outcome", END)
    return graph.compile()


def _pending(state: CareGapState, record: ActionRecord, reasons: list[str], role: Role, now: datetime
             ) -> PendingApproval:
    action, facts, policy, req = record.action, _facts(state), state.request.policy, state.request
    clock = clock_for(policy.approvals.entry_queue[role], role, policy, now)
    effect = service_effect(action)
    return PendingApproval(
        approval_id=f"{action.action_id}.{record.approval_requests}", workflow_id=req.workflow_id,
        action_id=action.action_id, tool=action.tool, arguments=action.arguments, digest=action.digest,
        rationale=action.rationale, evidence=action.evidence, confidence=action.confidence, signals=action.signals,
        reasons=reasons, required_role=clock.role, member_pseudonym=facts.member.pseudonym, requested_at=now,
        policy_id=policy.policy_id, queue=clock.queue, priority="urgent" if effect != "none" else "routine",
        sla_deadline=clock.deadline, remind_at=clock.remind_at,
        dual_signoff=effect in policy.approvals.dual_signoff_effects,
        context=CareGapReviewContext(
            period_start=req.period_start, period_end=req.period_end,
            open_gaps=[g.measure_id for g in facts.review.open_gaps],
            measures_version=facts.review.measures_version, plan_type=facts.eligibility.plan_type,
            age_years=facts.member.age_years, preferred_channel=facts.member.preferred_channel))


def _write_call(state: CareGapState, record: ActionRecord, key: str, now: datetime) -> tuple[Any, BaseModel]:
    req, args = state.request, record.action.arguments
    try:
        tool = write_tool_for(args)
    except LookupError as err:
        raise ToolFailure("UnknownTool", str(err)) from None
    # The run's episode is the member and period, not a stay: a Task is about the first open gap's measure.
    episode = f"care-gaps-{req.period_start.isoformat()}"
    common = {"member_id": req.member_id, "encounter_id": episode, "idempotency_key": key,
              "approved_by": record.approved_by, "approval": record.approval, "arguments": args}
    if tool is SEND_OUTREACH:
        policy = req.policy
        return tool, SendOutreachInput(**common, contact_window_start=policy.contact_window_start,
                                       contact_window_end=policy.contact_window_end,
                                       sms_max_chars=policy.sms_max_chars, program=PROGRAM_LABEL,
                                       max_contacts_per_week=policy.max_contacts_per_week)
    if tool is CREATE_TASK and isinstance(args, CreateTaskArgs):
        gaps = _facts(state).review.open_gaps
        focus = f"Measure/{gaps[0].measure_id}" if gaps else f"Patient/{req.member_id}"
        return tool, CreateTaskInput(**common, authored_at=now, focus=focus)
    raise ToolFailure("UnknownTool", f"{tool.name} is not a care-gap write tool")
