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
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

from agents.graph import build_outreach_graph
from agents.prior_auth_graph import build_prior_auth_graph
from guardrails.policy import GuardrailPolicy
from guardrails.prior_auth_policy import PriorAuthPolicy
from runtime.settings import Settings
from tools.registry import OUTREACH_TOOLS, PRIOR_AUTH_TOOLS, ToolSpec
from workflows.outreach import MemberOutreachWorkflow
from workflows.prior_auth import PriorAuthWorkflow

__all__ = ["OUTREACH", "PRIOR_AUTH", "PROGRAMS", "Program", "program_of_workflow_type"]


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

    @property
    def workflow_type(self) -> str:
        return workflow._Definition.must_from_class(self.workflow).name  # noqa: SLF001 (the SDK's own reader)



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
    configured_policy=Settings.guardrail_policy,
)

PRIOR_AUTH = Program(
    name="prior-auth-triage",
    title="Utilization management: prior-authorization triage (CMS-0057-F clocks; denials only by an MD)",
    trigger="a Da Vinci PAS request Bundle: careloom um submit FILE / POST /api/prior-auth",
    workflow=PriorAuthWorkflow,
    graph=build_prior_auth_graph,
    tools=PRIOR_AUTH_TOOLS,
    planners=("offline-um-rules/1",),
    policy=PriorAuthPolicy,
    id_prefix="prior-auth-",
    configured_policy=Settings.prior_auth_policy,
)

PROGRAMS: tuple[Program, ...] = (OUTREACH, PRIOR_AUTH)


def program_of_workflow_type(workflow_type: str) -> Program | None:
    """The program whose workflow has this type, or None."""
    return next((p for p in PROGRAMS if p.workflow_type == workflow_type), None)
