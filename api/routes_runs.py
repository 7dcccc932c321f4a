"""Outreach runs: the status of one run, as the run and Temporal say it (a failed run says ``failed``)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from api.decisions import NOT_FOUND
from api.deps import CurrentIdentity, TemporalClient, current_identity
from api.visibility import record_access, run_visible
from runtime.errors import DecisionRefused
from workflows.outreach_models import OutreachStatus
from workflows.run_report import RunReportError, run_report

__all__ = ["RunFailure", "RunReport", "router"]

router = APIRouter(prefix="/api/runs", dependencies=[Depends(current_identity)])


class RunFailure(BaseModel):
    type: str = Field(description="The failure's type, e.g. MemberNotFound, or Terminated / Cancelled.")
    message: str


class RunReport(OutreachStatus):
    """The ``status`` query's fields, with Temporal's word on how the run stands or ended."""

    status: str = Field(description="The run's status word while it runs or when it completed; how it ended "
                                    "otherwise: failed, terminated, cancelled, timed_out.")
    run_status: str | None = Field(default=None, description="The run's own last status word (what it was doing "
                                                             "when it ended, for a run that did not complete).")
    execution: str = Field(description="Temporal's execution status: running, completed, failed, ...")
    failure: RunFailure | None = None
    follow_up_task: str | None = Field(default=None, description="The Task a person got for a run that could not "
                                                                 "go on (Task/<id>).")
    discharged_at: datetime | None = None
    tcm_due: datetime | None = Field(default=None, description="The TCM interactive-contact deadline.")
    started_at: datetime | None = None
    closed_at: datetime | None = None


@router.get("/{workflow_id}")
async def run_status(request: Request, workflow_id: str, client: TemporalClient, who: CurrentIdentity) -> RunReport:
    """A run's status, if it routed nothing to a human or routed something to a role you may act for. A run that
    did not answer (so whose routing is unknown), an unknown id and a hidden run get the same 404."""
    try:
        found = await run_report(client, workflow_id, query_failed=True)
        report = RunReport.model_validate(found) if (
            found["program"] == "MemberOutreachWorkflow" and found["answered"]) else None
    except (RunReportError, ValueError):
        report = None
    if report is None or not run_visible(report, who):
        record_access(request, who, "run.status", "not_found", workflow_id=workflow_id)
        raise DecisionRefused("not_found", NOT_FOUND)
    record_access(request, who, "run.status", "shown", workflow_id=workflow_id)
    return report
