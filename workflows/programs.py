"""The programs careloom runs, each a declaration on the one shared agent runtime.

A program names its workflow (an :class:`~workflows.agent_run.AgentRun`), its
agent graph, its tools (from :mod:`tools.registry`), its planners, its
guardrail policy and the approval queues that policy routes to. The worker
registers every program's workflow and tools; the inbox, ledger, audit,
what-if, usage and replay read every program's runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from agents.care_gap_graph import build_care_gap_graph
from agents.care_gap_planner import PLAN_CARE_GAPS
from agents.outreach_graph import build_outreach_graph
from agents.planner import PLAN_OUTREACH
from agents.prior_auth_graph import build_prior_auth_graph
from agents.prior_auth_planner import RECOMMEND_DETERMINATION
from guardrails.actions import ProposedAction
from guardrails.care_gap_rules import check_gap_run, evaluate_gap_action
from guardrails.configured import outreach_policy, prior_auth_policy
from guardrails.outreach_rules import check_run, evaluate_action
from guardrails.policy import GuardrailPolicy
from guardrails.prior_auth_policy import PriorAuthPolicy
from guardrails.prior_auth_rules import evaluate_determination
from guardrails.verdicts import GuardrailVerdict
from runtime.settings import Settings
from tools.registry import (
    CHECK_ELIGIBILITY,
    CREATE_TASK,
    DRAFT_CARE_PLAN,
    EVALUATE_GAPS,
    RECORD_GAP_CLOSURE,
    GET_CLINICAL_CONTEXT,
    ISSUE_DETERMINATION,
    LOOKUP_MEMBER,
    REVIEW_EVIDENCE,
    SCORE_READMISSION_RISK,
    SEND_OUTREACH,
    ToolSpec,
)
from workflows.approvals import LEDGER_APPEND
from workflows.care_gap import CareGapWorkflow
from workflows.outreach import MemberOutreachWorkflow
from workflows.prior_auth import PriorAuthWorkflow

__all__ = ["ACTIVITY_TYPES", "ALL_TOOLS", "CARE_GAPS", "CARE_GAP_TOOLS", "OUTREACH", "OUTREACH_TOOLS", "PRIOR_AUTH_TOOLS", "PLANNER_ACTIVITIES", "PRIOR_AUTH", "PROGRAMS", "Program", "WORKFLOW_TYPES",
           "program_of_workflow_type"]


@dataclass(frozen=True)
class Program:
    """One care-management program."""

    name: str
    title: str
    trigger: str
    workflow: type
    graph: Callable[[], Any]
    tools: tuple[ToolSpec, ...]
    planners: tuple[str, ...]
    policy: type[BaseModel]
    id_prefix: str
    configured_policy: Callable[[Settings], BaseModel]
    """The deployment's policy for new runs, from settings."""
    judge: Callable[[ProposedAction, Any, Any, datetime | None, Any], GuardrailVerdict]
    """The program's guardrails: (proposal, facts, policy, time, the run's input) → verdict. Pure; audit and
    what-if use it."""
    stop_check: Callable[[Any, Any], GuardrailVerdict | None] | None = None
    """A run-level stop before planning (outreach: not eligible, not discharged), if the program has one."""

    @property
    def definition(self) -> Any:
        return workflow._Definition.must_from_class(self.workflow)  # noqa: SLF001 (the SDK's own reader)

    @property
    def workflow_type(self) -> str:
        return self.definition.name

    @property
    def input_type(self) -> type[BaseModel]:
        return self.definition.arg_types[0]

    @property
    def result_type(self) -> type[BaseModel]:
        return self.definition.ret_type

    @property
    def planner_tools(self) -> tuple[ToolSpec, ...]:
        return tuple(t for t in self.tools if t.kind == "planner")


OUTREACH_TOOLS: tuple[ToolSpec, ...] = (
    LOOKUP_MEMBER, CHECK_ELIGIBILITY, GET_CLINICAL_CONTEXT, SCORE_READMISSION_RISK, PLAN_OUTREACH,
    DRAFT_CARE_PLAN, CREATE_TASK, SEND_OUTREACH,
)
"""The post-discharge outreach program's tools."""

PRIOR_AUTH_TOOLS: tuple[ToolSpec, ...] = (
    LOOKUP_MEMBER, CHECK_ELIGIBILITY, REVIEW_EVIDENCE, RECOMMEND_DETERMINATION, ISSUE_DETERMINATION, CREATE_TASK,
)
"""The prior-authorization triage program's tools (the Task is the follow-up of an expired approval)."""


OUTREACH = Program(
    name="post-discharge-outreach",
    title="Post-discharge outreach (TCM contact within 2 business days, care plan, member message)",
    trigger="a discharge in the records store: careloom outreach start / demo",
    workflow=MemberOutreachWorkflow,
    graph=build_outreach_graph,
    tools=OUTREACH_TOOLS,
    planners=("offline-rules/1", "model (CARELOOM_MODEL)"),
    policy=GuardrailPolicy,
    id_prefix="outreach-",
    configured_policy=outreach_policy,
    judge=lambda proposal, facts, policy, at, run_input: evaluate_action(proposal, facts, policy, now=at),
    stop_check=check_run,
)

PRIOR_AUTH = Program(
    name="prior-auth-triage",
    title="Utilization management: prior-authorization triage (CMS-0057-F clocks; denials only by an MD)",
    trigger="a Da Vinci PAS request Bundle: careloom um submit FILE / POST /api/prior-auth",
    workflow=PriorAuthWorkflow,
    graph=build_prior_auth_graph,
    tools=PRIOR_AUTH_TOOLS,
    planners=("offline-um-rules/1", "model (CARELOOM_MODEL)"),
    policy=PriorAuthPolicy,
    id_prefix="prior-auth-",
    configured_policy=prior_auth_policy,
    judge=lambda proposal, facts, policy, at, run_input: evaluate_determination(
        proposal, facts, policy, appeal=getattr(run_input, "appeal", None) is not None),
)

CARE_GAP_TOOLS: tuple[ToolSpec, ...] = (
    LOOKUP_MEMBER, CHECK_ELIGIBILITY, EVALUATE_GAPS, PLAN_CARE_GAPS, CREATE_TASK, SEND_OUTREACH, RECORD_GAP_CLOSURE,
)
"""The care-gap closure program's tools."""

CARE_GAPS = Program(
    name="care-gap-closure",
    title="Care-gap closure (CQL quality measures: reminder, scheduling Task, PCP notification; closes on new data)",
    trigger="a member with an open gap in the measurement period: a campaign or careloom gaps start",
    workflow=CareGapWorkflow,
    graph=build_care_gap_graph,
    tools=CARE_GAP_TOOLS,
    planners=("offline-gap-rules/1",),
    policy=GuardrailPolicy,
    id_prefix="care-gap-",
    configured_policy=outreach_policy,
    judge=lambda proposal, facts, policy, at, run_input: evaluate_gap_action(proposal, facts, policy, now=at),
    stop_check=check_gap_run,
)

PROGRAMS: tuple[Program, ...] = (OUTREACH, PRIOR_AUTH, CARE_GAPS)


def program_of_workflow_type(workflow_type: str) -> Program | None:
    """The program whose workflow has this type, or None."""
    return next((p for p in PROGRAMS if p.workflow_type == workflow_type), None)


WORKFLOW_TYPES: frozenset[str] = frozenset(p.workflow_type for p in PROGRAMS)
"""Every careloom workflow type (what history commands accept)."""

PLANNER_ACTIVITIES: frozenset[str] = frozenset(t.name for p in PROGRAMS for t in p.planner_tools)
"""Activity types of every program's planner steps (what usage and audit read)."""

ALL_TOOLS: tuple[ToolSpec, ...] = tuple(dict.fromkeys((*(t for p in PROGRAMS for t in p.tools), LEDGER_APPEND)))
"""Every activity a careloom worker runs for the programs (each program's tools and the ledger)."""

ACTIVITY_TYPES: dict[str, tuple[type[BaseModel], type[Any]]] = {t.name: (t.input_type, t.result_type)
                                                               for t in ALL_TOOLS}
"""Activity type -> (input type, result type), for reading histories."""
