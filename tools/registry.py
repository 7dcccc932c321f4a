"""Every tool declared once: its activity (called by method reference), kind and write contract.

Workflows call ``tool.activity`` with ``workflow.execute_activity_method``;
activity names come from the ``@activity.defn`` they were registered with
and never appear as string literals elsewhere. History readers derive the
activity-type table (:data:`ACTIVITY_TYPES`) from here, and the approval
preview and the guardrails find a proposal's write tool by its arguments'
``tool`` tag (:func:`write_tool_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import activity

from agents.planner import HEARTBEAT_TIMEOUT_SECONDS, PlannerActivity
from agents.prior_auth_planner import RecommenderActivity
from guardrails.adverse_content import content_effect, most_adverse
from guardrails.policy import ServiceEffect
from store.ledger import LedgerActivities
from tools.activities import CareTools
from tools import determination
from tools.care_plan import DraftCarePlanArgs
from tools.outreach import SendOutreachArgs
from tools.previews import care_plan_preview, claim_response_preview, communication_preview, task_preview
from tools.prior_auth_tools import PriorAuthTools
from tools.tasks import CreateTaskArgs, task_service_effect

__all__ = ["ACTIVITY_TYPES", "ALL_TOOLS", "CHECK_ELIGIBILITY", "CREATE_TASK", "DRAFT_CARE_PLAN", "GET_CLINICAL_CONTEXT",
           "ISSUE_DETERMINATION", "LEDGER_APPEND", "LOOKUP_MEMBER", "OUTREACH_TOOLS", "PLAN_OUTREACH", "PRIOR_AUTH_TOOLS",
           "RECOMMEND_DETERMINATION", "REVIEW_EVIDENCE", "SCORE_READMISSION_RISK", "SEND_OUTREACH",
           "ToolKind", "ToolSpec", "write_tool_for"]

ToolKind = Literal["read", "write", "planner", "ledger"]


def _no_effect(_arguments: BaseModel) -> ServiceEffect:
    return "none"


@dataclass(frozen=True)
class ToolSpec:
    """One tool: the activity that runs it and, for a write tool, what a proposal of it looks like."""

    activity: Callable[..., Any] = field(repr=False)
    kind: ToolKind
    arguments: type[BaseModel] | None = None
    """Write tools: the arguments a planner proposes (tagged by their ``tool`` literal)."""
    service_effect: Callable[[Any], ServiceEffect] = field(default=_no_effect, repr=False)
    """Write tools: the proposal's effect on the member's services (adverse needs a clinician)."""
    preview: Callable[..., list[dict[str, Any]]] | None = field(default=None, repr=False)
    """Write tools: the FHIR resources the proposal would write, for the reviewer."""
    heartbeat_seconds: float | None = None
    """Long activities that heartbeat: a worker that dies mid-call is noticed after this long, not at the
    start-to-close timeout."""

    @property
    def heartbeat_timeout(self) -> timedelta | None:
        return None if self.heartbeat_seconds is None else timedelta(seconds=self.heartbeat_seconds)

    @cached_property
    def definition(self) -> Any:
        return activity._Definition.must_from_callable(self.activity)  # noqa: SLF001 (the SDK's own reader)

    @property
    def name(self) -> str:
        """The activity type, frozen once deployed."""
        return self.definition.name

    @property
    def tag(self) -> str | None:
        """The arguments' ``tool`` literal (write tools)."""
        return None if self.arguments is None else self.arguments.model_fields["tool"].default

    @property
    def input_type(self) -> type[BaseModel]:
        return self.definition.arg_types[0]

    @property
    def result_type(self) -> type[Any]:
        return self.definition.ret_type


def _write(method: Callable[..., Any], arguments: type[BaseModel], *,
           service_effect: Callable[[Any], ServiceEffect] = _no_effect, **kwargs: Any) -> ToolSpec:
    # Every write tool's effect counts what its text does too (issue 21: guardrails.adverse_content), so the
    # guardrails of every program route an adverse text to an MD whatever the tool or the planner declares.
    def effect(arguments: Any) -> ServiceEffect:  # noqa: ANN401
        return most_adverse(service_effect(arguments), content_effect(arguments).effect)

    return ToolSpec(method, "write", arguments=arguments, service_effect=effect, **kwargs)


LOOKUP_MEMBER = ToolSpec(CareTools.lookup_member, "read")
CHECK_ELIGIBILITY = ToolSpec(CareTools.check_eligibility, "read")
GET_CLINICAL_CONTEXT = ToolSpec(CareTools.get_clinical_context, "read")
SCORE_READMISSION_RISK = ToolSpec(CareTools.score_readmission_risk, "read")
PLAN_OUTREACH = ToolSpec(PlannerActivity.plan_outreach, "planner", heartbeat_seconds=HEARTBEAT_TIMEOUT_SECONDS)
LEDGER_APPEND = ToolSpec(LedgerActivities.append, "ledger")


DRAFT_CARE_PLAN = _write(CareTools.draft_care_plan, DraftCarePlanArgs, preview=care_plan_preview)
CREATE_TASK = _write(CareTools.create_task, CreateTaskArgs, service_effect=task_service_effect, preview=task_preview)
SEND_OUTREACH = _write(CareTools.send_outreach, SendOutreachArgs, preview=communication_preview)

OUTREACH_TOOLS: tuple[ToolSpec, ...] = (
    LOOKUP_MEMBER, CHECK_ELIGIBILITY, GET_CLINICAL_CONTEXT, SCORE_READMISSION_RISK, PLAN_OUTREACH,
    DRAFT_CARE_PLAN, CREATE_TASK, SEND_OUTREACH,
)
"""The post-discharge outreach program's tools."""

REVIEW_EVIDENCE = ToolSpec(PriorAuthTools.review_evidence, "read")
RECOMMEND_DETERMINATION = ToolSpec(RecommenderActivity.recommend_determination, "planner",
                                   heartbeat_seconds=HEARTBEAT_TIMEOUT_SECONDS)
ISSUE_DETERMINATION = _write(PriorAuthTools.issue_determination, determination.IssueDeterminationArgs,
                             service_effect=determination.service_effect, preview=claim_response_preview)

PRIOR_AUTH_TOOLS: tuple[ToolSpec, ...] = (
    LOOKUP_MEMBER, CHECK_ELIGIBILITY, REVIEW_EVIDENCE, RECOMMEND_DETERMINATION, ISSUE_DETERMINATION, CREATE_TASK,
)
"""The prior-authorization triage program's tools (the Task is the follow-up of an expired approval)."""

ALL_TOOLS: tuple[ToolSpec, ...] = tuple(dict.fromkeys((*OUTREACH_TOOLS, *PRIOR_AUTH_TOOLS, LEDGER_APPEND)))
"""Every activity a careloom worker runs."""

ACTIVITY_TYPES: dict[str, tuple[type[BaseModel], type[Any]]] = {t.name: (t.input_type, t.result_type)
                                                               for t in ALL_TOOLS}
"""Activity type -> (input type, result type), for reading histories."""

_BY_TAG = {t.tag: t for t in ALL_TOOLS if t.kind == "write"}


def write_tool_for(arguments: BaseModel) -> ToolSpec:
    """The write tool a proposal's arguments are for (by their ``tool`` tag)."""
    tag = getattr(arguments, "tool", None)
    try:
        return _BY_TAG[tag]
    except KeyError:
        raise LookupError(f"no write tool for arguments tagged {tag!r}; known: {', '.join(sorted(_BY_TAG))}") from None
