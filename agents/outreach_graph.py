"""The outreach agent: a LangGraph ``StateGraph`` executed inside the workflow.

    first step:  START → gather_facts → (record_outcome | plan → guard → execute → …)
    on resume:   START → apply_decisions → guard → execute → …
    … → (record_outcome → END | END while parked)

Every node and router is ``async def``. Nodes never touch the world directly:
they go through an :class:`AgentRuntime` (the workflow), which turns tool
calls into activities. The graph never waits for people or clocks: when
actions are awaiting approval or deferred, one invocation ends ("parked") and
the workflow waits durably (update or timer), then invokes the graph again
with the received decisions in ``state.inbox``. A parked run so holds no
suspended LangGraph frames, which keeps thousands of parked runs cheap and
lets Temporal evict them cleanly.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from functools import cache
from typing import Any, Literal, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from pydantic import BaseModel
from temporalio import workflow

from agents.offline_planner import OfflinePlanner
from agents.outreach_state import OutreachState
from agents.planner import PlannerInput, PlannerOutput
from agents.runtime import AgentRuntime, ToolFailure, runtime_of
from agents.steps import apply_decisions, contact_refusals, execute_ready, guard_actions
from guardrails.actions import TERMINAL, ActionRecord
from guardrails.approvals import PendingApproval, ReviewContext
from guardrails.facts import RunFacts
from guardrails.outreach_rules import check_run, evaluate_action, service_effect
from guardrails.plan_completeness import complete_plan
from guardrails.policy import Role
from guardrails.routing import clock_for
from runtime.search_attributes import RunStatus
from tools.care_plan import DraftCarePlanInput
from tools.clinical import ClinicalContextInput
from tools.deadlines import tcm_contact_due
from tools.eligibility import EligibilityInput
from tools.member import LookupMemberInput
from tools.outreach import SendOutreachInput
from tools.registry import (
    CHECK_ELIGIBILITY,
    CREATE_TASK,
    DRAFT_CARE_PLAN,
    GET_CLINICAL_CONTEXT,
    LOOKUP_MEMBER,
    SCORE_READMISSION_RISK,
    SEND_OUTREACH,
    write_tool_for,
)
from tools.risk import RiskInput
from tools.tasks import CreateTaskArgs, CreateTaskInput

__all__ = ["PLAN_COMPLETENESS_PATCH", "OutreachRuntime", "build_outreach_graph", "run_status"]

PLAN_COMPLETENESS_PATCH = "plan-completeness"
"""The patch id of the plan-completeness check (issue 21.2)."""


class OutreachRuntime(AgentRuntime, Protocol):
    """The runtime plus planning (retried for the planning budget, then the offline rules for review)."""

    async def plan(self, data: PlannerInput) -> PlannerOutput: ...


def run_status(state: OutreachState) -> RunStatus:
    """The run's status word, derived from its state."""
    if state.stop is not None:
        return "ineligible" if state.facts and state.facts.clinical.stay.discharged_at else "not_discharged"
    statuses = {r.status for r in state.actions}
    if "withdrawn" in statuses:
        return "withdrawn"
    if "awaiting_approval" in statuses:
        return "awaiting_approval"
    if "deferred" in statuses:
        return "deferred"
    if statuses <= TERMINAL:
        return "needs_attention" if statuses & {"failed", "expired"} else "completed"
    return "executing"


async def gather_facts(state: OutreachState, config: RunnableConfig) -> Command[Literal["plan", "record_outcome"]]:
    rt = _runtime(config)
    req = state.request
    rt.publish(state, "gathering")
    member, clinical = await asyncio.gather(
        rt.call_tool(LOOKUP_MEMBER, LookupMemberInput(member_id=req.member_id, encounter_id=req.encounter_id)),
        rt.call_tool(GET_CLINICAL_CONTEXT, ClinicalContextInput(member_id=req.member_id,
                                                                 encounter_id=req.encounter_id)),
    )
    stay = clinical.stay
    on_date = (stay.discharged_at or stay.admitted_at).date()
    eligibility, risk = await asyncio.gather(
        # In force on the discharge date and today (issue 21.5): an old discharge started explicitly must not
        # contact a member whose coverage has ended since.
        rt.call_tool(CHECK_ELIGIBILITY, EligibilityInput(member_id=req.member_id, on_date=on_date,
                                                         also_on=rt.now().date())),
        rt.call_tool(SCORE_READMISSION_RISK, RiskInput(
            length_of_stay_days=stay.length_of_stay_days, acute_admission=stay.acute_admission,
            condition_codes=clinical.condition_codes, ed_visits_6mo=clinical.ed_visits_6mo,
            member_id=req.member_id, encounter_id=req.encounter_id)),
    )
    policy = req.policy
    due = None
    if stay.discharged_at is not None:
        due = tcm_contact_due(stay.discharged_at, member.time_zone,
                              business_days=policy.tcm_contact_business_days,
                              end_of_business_hour=policy.business_day_end_hour, holidays=policy.holidays)
    facts = RunFacts(member=member, clinical=clinical, eligibility=eligibility, risk=risk, tcm_contact_due=due)
    stop = check_run(facts, policy)
    verdicts = [*state.verdicts, stop] if stop else state.verdicts
    return Command(update={"facts": facts, "stop": stop, "verdicts": verdicts},
                   goto="record_outcome" if stop else "plan")

async def plan(state: OutreachState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    rt.publish(state, "planning")
    facts = _facts(state)
    policy = state.request.policy
    data = PlannerInput(workflow_id=state.request.workflow_id, facts=facts, high_risk_lace=policy.high_risk_lace)
    out = await rt.plan(data)
    proposals, verdicts = out.proposals, state.verdicts
    # Any planner's plan against what the policy mandates for these facts, the offline rules as the reference.
    completed = complete_plan(out.proposals, OfflinePlanner().propose(data), facts,
                              high_risk_lace=policy.high_risk_lace, planner=out.planner, policy=policy)
    # Behind a patch marker, written only when something was restored: a run planned before this check replays
    # with the plan it recorded; a complete plan (every offline plan) leaves the history as it was.
    if completed.changes and workflow.patched(PLAN_COMPLETENESS_PATCH):
        proposals = completed.proposals
        verdicts = [*verdicts, *filter(None, [completed.verdict(policy.policy_id)])]
    seen: set[str] = set()
    records = []
    for proposal in proposals:
        if proposal.action_id in seen:
            raise ToolFailure("InvalidPlan", f"planner {out.planner} proposed action id {proposal.action_id} twice")
        seen.add(proposal.action_id)
        records.append(ActionRecord(action=proposal, proposed_digest=proposal.digest))
    return {"planner": out.planner, "planner_usage": out.usage, "actions": records, "verdicts": verdicts}

async def guard(state: OutreachState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    facts, policy, now = _facts(state), state.request.policy, rt.now()
    actions, verdicts = guard_actions(
        rt, state.actions, state.verdicts,
        judge=lambda r: evaluate_action(r.action, facts, policy, now=now, approved_role=r.approver_role),
        describe=lambda r, reasons, role: _pending(state, r, reasons, role, now))
    return {"actions": actions, "verdicts": verdicts}

async def execute(state: OutreachState, config: RunnableConfig) -> Command[Literal["record_outcome", "__end__"]]:
    rt = _runtime(config)
    if any(r.status == "ready" for r in state.actions):
        rt.publish(state, "executing")

    policy = state.request.policy
    on_failure = contact_refusals(rt.now, _facts(state).member.time_zone, start=policy.contact_window_start,
                                  end=policy.contact_window_end)
    actions = await execute_ready(rt, state.actions, write_call=lambda r: _write_call(state, r, rt.idempotency_key(r.action.action_id)),
                                  on_failure=on_failure)
    # All actions final: record the outcome; otherwise the run parks (END) until decisions or a deferral.
    finished = state.model_copy(update={"actions": actions}).finished
    return Command(update={"actions": actions}, goto="record_outcome" if finished else END)

async def record_outcome(state: OutreachState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    rt.publish(state, run_status(state))
    return {}

async def entry(state: OutreachState) -> str:
    return "gather_facts" if state.facts is None else "apply_decisions"

def _runtime(config: RunnableConfig) -> OutreachRuntime:
    return runtime_of(config)


@cache
def build_outreach_graph() -> Any:
    """The compiled agent graph, built once per process.

    Nodes are module-level functions that find their runtime (the workflow
    instance) in ``config["configurable"]["runtime"]``: compiling once matters
    because LangGraph inspects every node's closure at compile time (about
    25 ms), which per run dominated replay and worker CPU.
    """
    graph = StateGraph(OutreachState)
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


def _facts(state: OutreachState) -> RunFacts:
    if state.facts is None:
        raise ToolFailure("MissingFacts", "the graph reached planning without facts")
    return state.facts


def _pending(state: OutreachState, record: ActionRecord, reasons: list[str], role: Role, now: datetime
             ) -> PendingApproval:
    action, facts, policy = record.action, _facts(state), state.request.policy
    routing = policy.approvals
    clock = clock_for(routing.entry_queue[role], role, policy, now)
    effect = service_effect(action)
    args = action.arguments
    urgent = (effect != "none" or (facts.lace or 0) >= policy.high_risk_lace or facts.risk.status != "scored"
              or (isinstance(args, CreateTaskArgs) and args.priority != "routine"))
    stay, parts = facts.clinical.stay, facts.risk.components
    return PendingApproval(
        approval_id=f"{action.action_id}.{record.approval_requests}",
        workflow_id=state.request.workflow_id,
        action_id=action.action_id,
        tool=action.tool,
        arguments=action.arguments,
        digest=action.digest,
        rationale=action.rationale,
        evidence=action.evidence,
        confidence=action.confidence,
        signals=action.signals,
        reasons=reasons,
        required_role=clock.role,
        member_pseudonym=facts.member.pseudonym,
        requested_at=now,
        policy_id=policy.policy_id,
        queue=clock.queue,
        priority="urgent" if urgent else "routine",
        sla_deadline=clock.deadline,
        remind_at=clock.remind_at,
        dual_signoff=effect in routing.dual_signoff_effects,
        context=ReviewContext(
            lace=facts.lace,
            lace_components=f"L{parts.l} A{parts.a} C{parts.c} E{parts.e}" if parts else None,
            risk_status=facts.risk.status,
            charlson_categories=facts.risk.charlson_categories,
            plan_type=facts.eligibility.plan_type,
            discharged_on=stay.discharged_at.date() if stay.discharged_at else None,
            discharge_disposition=stay.discharge_disposition,
            length_of_stay_days=stay.length_of_stay_days,
            tcm_contact_due=facts.tcm_contact_due,
            age_years=facts.member.age_years,
            preferred_channel=facts.member.preferred_channel,
            risk_model=facts.risk.model.words() if facts.risk.model else None,
            risk_explanation=[c.words for c in facts.risk.model.contributions] if facts.risk.model else [],
            risk_model_note=(facts.risk.model.explanation_reason if facts.risk.model else facts.risk.model_reason),
            risk_model_ref=facts.risk.model.ref() if facts.risk.model else None,
        ),
    )


def _write_call(state: OutreachState, record: ActionRecord, key: str) -> tuple[Any, BaseModel]:
    """The write tool for the action and its input: identifiers, the idempotency key and the arguments."""
    req, args = state.request, record.action.arguments
    try:
        tool = write_tool_for(args)
    except LookupError as err:
        raise ToolFailure("UnknownTool", str(err)) from None
    common = {"member_id": req.member_id, "encounter_id": req.encounter_id,
              "idempotency_key": key, "approved_by": record.approved_by,
              "approval": record.approval, "arguments": args}
    if tool is SEND_OUTREACH:
        policy = req.policy
        return tool, SendOutreachInput(**common, contact_window_start=policy.contact_window_start,
                                       contact_window_end=policy.contact_window_end,
                                       sms_max_chars=policy.sms_max_chars)
    if tool is DRAFT_CARE_PLAN:
        return tool, DraftCarePlanInput(**common, authored_at=_authored(state))
    if tool is CREATE_TASK:
        return tool, CreateTaskInput(**common, authored_at=_authored(state))
    raise ToolFailure("UnknownTool", f"{tool.name} is not an outreach write tool")


def _authored(state: OutreachState) -> datetime:
    stay = _facts(state).clinical.stay
    return stay.discharged_at or stay.admitted_at
