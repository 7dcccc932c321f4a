"""Every tool declared once, by its frozen activity type: its kind, its input and result types and, for a write
tool, the arguments model a planner proposes.

A declaration names the activity (a string, never the class that hosts it), so workflow code calls tools with
``workflow.execute_activity(spec.name, ..., result_type=spec.result_type)`` without importing any module that
does I/O, and history readers derive the activity-type table from the declarations. The hosts (the classes whose
``@activity.defn`` methods run them) are given to the worker once; :mod:`workflows.programs_plugin` binds every
declared tool of every program to the host activity of that name and refuses to start when one is missing or
its types differ. Planner tools are declared beside their planners (``agents.planner.PLAN_OUTREACH``,
``agents.prior_auth_planner.RECOMMEND_DETERMINATION``), the ledger beside the approval book
(``workflows.approvals.LEDGER_APPEND``); a program's catalogue (:mod:`workflows.programs`) lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel

from tools.care_gap_models import ClosureRecord, EvaluateGapsInput, GapReview, RecordClosuresInput
from tools.care_plan import DraftCarePlanArgs, DraftCarePlanInput
from tools.clinical import ClinicalContext, ClinicalContextInput
from tools.determination import IssueDeterminationArgs, WriteDeterminationInput
from tools.eligibility import EligibilityInput, EligibilityResult
from tools.evidence_review import EvidenceReview, ReviewEvidenceInput
from tools.member import LookupMemberInput, MemberProfile
from tools.outreach import SendOutreachArgs, SendOutreachInput
from tools.risk import RiskInput, RiskScore
from tools.tasks import CreateTaskArgs, CreateTaskInput
from tools.writes import WriteResult

__all__ = ["CHECK_ELIGIBILITY", "CREATE_TASK", "DRAFT_CARE_PLAN", "EVALUATE_GAPS", "RECORD_GAP_CLOSURE", "GET_CLINICAL_CONTEXT", "ISSUE_DETERMINATION",
           "LOOKUP_MEMBER", "REVIEW_EVIDENCE", "SCORE_READMISSION_RISK", "SEND_OUTREACH", "WRITE_TOOLS", "ToolKind",
           "ToolSpec", "write_tool_for"]

ToolKind = Literal["read", "write", "planner", "ledger"]


@dataclass(frozen=True)
class ToolSpec:
    """One tool: the activity type that runs it and, for a write tool, what a proposal of it looks like."""

    name: str
    """The activity type, frozen once deployed (histories name it)."""
    kind: ToolKind
    input_type: type[BaseModel]
    result_type: type[Any]
    arguments: type[BaseModel] | None = None
    """Write tools: the arguments a planner proposes (tagged by their ``tool`` literal; each knows its declared
    effect on the member's services, ``arguments.effect()``)."""
    heartbeat_seconds: float | None = None
    """Long activities that heartbeat: a worker that dies mid-call is noticed after this long, not at the
    start-to-close timeout."""

    @property
    def heartbeat_timeout(self) -> timedelta | None:
        return None if self.heartbeat_seconds is None else timedelta(seconds=self.heartbeat_seconds)

    @property
    def tag(self) -> str | None:
        """The arguments' ``tool`` literal (write tools)."""
        return None if self.arguments is None else self.arguments.model_fields["tool"].default


LOOKUP_MEMBER = ToolSpec("tools.lookup_member", "read", LookupMemberInput, MemberProfile)
CHECK_ELIGIBILITY = ToolSpec("tools.check_eligibility", "read", EligibilityInput, EligibilityResult)
GET_CLINICAL_CONTEXT = ToolSpec("tools.get_clinical_context", "read", ClinicalContextInput, ClinicalContext)
SCORE_READMISSION_RISK = ToolSpec("tools.score_readmission_risk", "read", RiskInput, RiskScore)
DRAFT_CARE_PLAN = ToolSpec("tools.draft_care_plan", "write", DraftCarePlanInput, WriteResult,
                           arguments=DraftCarePlanArgs)
CREATE_TASK = ToolSpec("tools.create_task", "write", CreateTaskInput, WriteResult, arguments=CreateTaskArgs)
SEND_OUTREACH = ToolSpec("tools.send_outreach", "write", SendOutreachInput, WriteResult, arguments=SendOutreachArgs)
REVIEW_EVIDENCE = ToolSpec("um.review_evidence", "read", ReviewEvidenceInput, EvidenceReview)
EVALUATE_GAPS = ToolSpec("care_gaps.evaluate", "read", EvaluateGapsInput, GapReview)
RECORD_GAP_CLOSURE = ToolSpec("care_gaps.record_closure", "ledger", RecordClosuresInput, ClosureRecord)
ISSUE_DETERMINATION = ToolSpec("um.issue_determination", "write", WriteDeterminationInput, WriteResult,
                               arguments=IssueDeterminationArgs)

WRITE_TOOLS: tuple[ToolSpec, ...] = (DRAFT_CARE_PLAN, CREATE_TASK, SEND_OUTREACH, ISSUE_DETERMINATION)
"""Every write tool a planner may propose."""

_BY_TAG = {t.tag: t for t in WRITE_TOOLS}


def write_tool_for(arguments: BaseModel) -> ToolSpec:
    """The write tool a proposal's arguments are for (by their ``tool`` tag)."""
    tag = getattr(arguments, "tool", None)
    try:
        return _BY_TAG[tag]
    except KeyError:
        raise LookupError(f"no write tool for arguments tagged {tag!r}; known: {', '.join(sorted(_BY_TAG))}") from None
