"""The prior-authorization triage agent: a LangGraph ``StateGraph`` executed inside the workflow.

    first step:  START → gather_facts → recommend → guard → execute → (record_outcome → END | END parked)
    on resume:   START → apply_decisions → guard → execute → …

``gather_facts`` reads the member (minimum necessary), coverage on the service
date and the evidence review (criteria met or not, with citation offsets into
the notes; the note text stays in the activity). ``recommend`` asks the
recommender for one determination; the guardrails send anything adverse to an
MD and a second reviewer; only an approval with every criterion met and cited
is issued without a human, where policy allows it.
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

from agents.prior_auth_planner import RecommendInput
from agents.prior_auth_planner import RECOMMEND_DETERMINATION
from agents.prior_auth_state import PriorAuthState
from agents.runtime import AgentRuntime, ToolFailure, runtime_of
from agents.steps import apply_decisions, execute_ready, guard_actions
from guardrails.actions import TERMINAL, ActionRecord
from guardrails.adverse_content import action_effect
from guardrails.approvals import CriterionReview, PendingApproval, PriorAuthReviewContext
from guardrails.facts import PriorAuthFacts
from guardrails.policy import Role
from guardrails.prior_auth_rules import evaluate_determination
from guardrails.routing import clock_for
from runtime.search_attributes import RunStatus
from tools.determination import WriteDeterminationInput
from tools.eligibility import EligibilityInput
from tools.evidence_review import ReviewEvidenceInput, cite
from tools.member import LookupMemberInput
from tools.registry import (
    CHECK_ELIGIBILITY,
    CREATE_TASK,
    ISSUE_DETERMINATION,
    LOOKUP_MEMBER,
    REVIEW_EVIDENCE,
    ToolSpec,
    write_tool_for,
)
from tools.tasks import CreateTaskInput

__all__ = ["build_prior_auth_graph", "prior_auth_status"]


def prior_auth_status(state: PriorAuthState) -> RunStatus:
    """The run's status word, derived from its state."""
    statuses = {r.status for r in state.actions}
    if "withdrawn" in statuses:
        return "withdrawn"
    if "awaiting_approval" in statuses:
        return "awaiting_approval"
    if state.planner is not None and statuses <= TERMINAL:
        # A request is done when a determination was issued; a rejected or expired one leaves it to a person.
        issued = any(r.status == "executed" and r.action.tool == ISSUE_DETERMINATION.tag for r in state.actions)
        return "completed" if issued and not statuses & {"failed", "expired"} else "needs_attention"
    return "executing" if state.planner is not None else "gathering"


def _runtime(config: RunnableConfig) -> AgentRuntime:
    return runtime_of(config)


def _facts(state: PriorAuthState) -> PriorAuthFacts:
    if state.facts is None:
        raise ToolFailure("MissingFacts", "the graph reached the recommendation without facts")
    return state.facts


async def gather_facts(state: PriorAuthState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    sub = state.request.submission
    rt.publish(state, "gathering")
    member, eligibility, review = await asyncio.gather(
        rt.call_tool(LOOKUP_MEMBER, LookupMemberInput(member_id=sub.member_id)),
        rt.call_tool(CHECK_ELIGIBILITY, EligibilityInput(member_id=sub.member_id, on_date=sub.service_date)),
        rt.call_tool(REVIEW_EVIDENCE, ReviewEvidenceInput(claim_id=sub.claim_id, items=sub.items,
                                                          questionnaire_responses=state.questionnaire_responses())),
    )
    return {"facts": PriorAuthFacts(member=member, eligibility=eligibility, review=review)}


async def recommend(state: PriorAuthState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    rt.publish(state, "planning")
    out = await rt.call_tool(RECOMMEND_DETERMINATION,
                             RecommendInput(workflow_id=state.request.workflow_id, facts=_facts(state)))
    proposals = out.proposals
    if state.round:
        # A later round's actions are new actions (their own approvals, idempotency keys and ClaimResponse).
        proposals = [p.model_copy(update={"action_id": f"r{state.round}-{p.action_id}"[:40]}) for p in proposals]
    ids = [p.action_id for p in proposals]
    if len(set(ids)) != len(ids):
        raise ToolFailure("InvalidPlan", f"recommender {out.planner} proposed an action id twice: {ids}")
    records = [ActionRecord(action=p, proposed_digest=p.digest) for p in proposals]
    return {"planner": out.planner, "planner_usage": out.usage, "actions": records}


async def guard(state: PriorAuthState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    facts, policy, now = _facts(state), state.request.policy, rt.now()
    actions, verdicts = guard_actions(
        rt, state.actions, state.verdicts,
        judge=lambda r: evaluate_determination(r.action, facts, policy, approved_role=r.approver_role,
                                               appeal=state.request.appeal is not None),
        describe=lambda r, reasons, role: _pending(state, r, reasons, role, now))
    return {"actions": actions, "verdicts": verdicts}


async def execute(state: PriorAuthState, config: RunnableConfig) -> Command[Literal["record_outcome", "__end__"]]:
    rt = _runtime(config)
    if any(r.status == "ready" for r in state.actions):
        rt.publish(state, "executing")
    actions = await execute_ready(rt, state.actions, write_call=lambda r: _write_call(state, r, rt.now(),
                                                                                   rt.idempotency_key(r.action.action_id)))
    finished = state.model_copy(update={"actions": actions}).finished
    return Command(update={"actions": actions}, goto="record_outcome" if finished else END)



async def record_outcome(state: PriorAuthState, config: RunnableConfig) -> dict[str, Any]:
    _runtime(config).publish(state, prior_auth_status(state))
    return {}


async def entry(state: PriorAuthState) -> str:
    return "gather_facts" if state.facts is None else "apply_decisions"


@cache
def build_prior_auth_graph() -> Any:
    """The compiled graph, built once per process (nodes find their runtime in the config)."""
    graph = StateGraph(PriorAuthState)
    graph.add_node("gather_facts", gather_facts)
    graph.add_node("recommend", recommend)
    graph.add_node("guard", guard)
    graph.add_node("execute", execute)
    graph.add_node("apply_decisions", apply_decisions)
    graph.add_node("record_outcome", record_outcome)
    graph.add_conditional_edges(START, entry, ["gather_facts", "apply_decisions"])
    graph.add_edge("gather_facts", "recommend")
    graph.add_edge("recommend", "guard")
    graph.add_edge("guard", "execute")
    graph.add_edge("apply_decisions", "guard")
    graph.add_edge("record_outcome", END)
    return graph.compile()


def _pending(state: PriorAuthState, record: ActionRecord, reasons: list[str], role: Role, now: datetime
             ) -> PendingApproval:
    action, facts, req = record.action, _facts(state), state.request
    policy, sub = req.policy, req.submission
    effect = action_effect(action.arguments)
    # An expedited appeal is reviewed in the expedited queues, whatever the request's own priority was.
    priority = "expedited" if req.appeal is not None and req.appeal.expedited else sub.priority
    clock = clock_for(policy.entry_queue(priority, role), role, policy, now)
    review = facts.review
    item = PendingApproval(
        approval_id=f"{action.action_id}.{record.approval_requests}",
        workflow_id=req.workflow_id,
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
        priority="urgent" if priority == "expedited" or effect != "none" else "routine",
        sla_deadline=clock.deadline,
        remind_at=clock.remind_at,
        dual_signoff=effect in policy.approvals.dual_signoff_effects,
        decide_by=req.decision_due,
        context=PriorAuthReviewContext(
            priority=priority, received_at=sub.received_at, decision_due=req.decision_due,
            service_codes=[i.code for i in sub.items],
            service_policy=", ".join(p.policy_id for p in review.policies) or None,
            criteria_version=review.criteria_version, plan_type=facts.eligibility.plan_type,
            eligible=facts.eligibility.inforce,
            criteria=[CriterionReview(criterion_id=c.criterion_id, description=c.description, status=c.status,
                                      citations=[cite(x) for x in c.citations],
                                      contrary=[cite(x) for x in c.contrary])
                      # once per medical policy, not per line: a 50-line request stays a small item
                      for p in review.policies for c in p.criteria],
        ),
    )
    # The first queue's clock too stops at the regulatory due time.
    return item.entering(clock)


def _write_call(state: PriorAuthState, record: ActionRecord, now: datetime, key: str) -> tuple[ToolSpec, BaseModel]:
    req, args = state.request, record.action.arguments
    sub = req.submission
    tool = write_tool_for(args)
    if tool is ISSUE_DETERMINATION:
        return tool, WriteDeterminationInput(
            claim_id=sub.claim_id, member_id=sub.member_id, coverage_id=sub.coverage_id, idempotency_key=key,
            approved_by=record.approved_by, approval=record.approval, arguments=args, decided_at=now,
            criteria_version=_facts(state).review.criteria_version,
            appeal_of=req.appeal.claim_response if req.appeal else None)
    if tool is CREATE_TASK:
        return tool, CreateTaskInput(member_id=sub.member_id, encounter_id=sub.claim_id, focus=f"Claim/{sub.claim_id}",
                                     idempotency_key=key, arguments=args, approved_by=record.approved_by,
                                     approval=record.approval, authored_at=now)
    raise ToolFailure("UnknownTool", f"{tool.name} is not a prior-authorization write tool")
