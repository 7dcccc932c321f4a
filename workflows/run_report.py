"""What a run is, as Temporal and the run itself say it: the report behind `outreach status`, `um status` and
``GET /api/runs/{id}``.

A run's own ``status`` query only knows what the run knew when it last ran: a run that FAILED still answers
its last status word (``gathering``), and any query of a closed run needs a worker to replay its history
(with none polling, Temporal answers after 30 s). So the report starts from Temporal's description (one RPC:
the execution status, times and search attributes) and then:

* a running run answers its ``status`` query (live pending approvals), bounded by ``query_timeout``; a run
  that does not answer (no worker) is reported from its search attributes with ``answered: false``;
* a completed run is read from its result (the close event: no worker, no replay);
* a failed, terminated, cancelled or timed-out run reports ``status`` = that ending, the failure type and
  message, its last status word as ``run_status``, and the follow-up Task the run gave a person (from its
  history); its ``status`` query is asked only when ``query_failed`` (the API, whose visibility rules read
  the run's verdicts).

Nothing here imports a workflow or LangGraph: the CLI's commands stay fast to start.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.service import RPCError, RPCStatusCode

from runtime import search_attributes as sa
from runtime.errors import CareloomError

__all__ = ["ENDINGS", "RunNotFound", "RunReportError", "follow_up_of", "run_report"]

ENDINGS = {
    WorkflowExecutionStatus.RUNNING: "running", WorkflowExecutionStatus.COMPLETED: "completed",
    WorkflowExecutionStatus.FAILED: "failed", WorkflowExecutionStatus.CANCELED: "cancelled",
    WorkflowExecutionStatus.TERMINATED: "terminated", WorkflowExecutionStatus.CONTINUED_AS_NEW: "continued_as_new",
    WorkflowExecutionStatus.TIMED_OUT: "timed_out",
}
"""Temporal's execution status as the report spells it (``execution``)."""
_CREATE_TASK = "tools.create_task"
_FOLLOW_UP_KEY = "/run-failure"  # the idempotency key suffix of a run's follow-up Task (workflows.agent_run)


class RunReportError(CareloomError):
    """Temporal could not be asked about the run (unreachable, refused)."""


class RunNotFound(RunReportError):
    """No run has this workflow id."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def follow_up_of(client: Client, workflow_id: str, run_id: str | None) -> str | None:
    """The reference (``Task/<id>``) of the follow-up Task this run gave a person, if it wrote one."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    scheduled: set[int] = set()
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == _CREATE_TASK:
                [data] = await client.data_converter.decode(attrs.input.payloads) or [None]
                if isinstance(data, dict) and str(data.get("idempotency_key", "")).endswith(_FOLLOW_UP_KEY):
                    scheduled.add(event.event_id)
        elif event.HasField("activity_task_completed_event_attributes"):
            attrs = event.activity_task_completed_event_attributes
            if attrs.scheduled_event_id in scheduled:
                [result] = await client.data_converter.decode(attrs.result.payloads) or [None]
                if isinstance(result, dict) and result.get("reference"):
                    return str(result["reference"])
    return None


def _failure(err: BaseException) -> dict[str, str]:
    """Type and message of how a run ended, from the cause Temporal recorded."""
    cause = err.cause if isinstance(err, WorkflowFailureError) else err
    if isinstance(cause, ApplicationError):
        return {"type": cause.type or "ApplicationError", "message": cause.message}
    if isinstance(cause, TerminatedError):
        return {"type": "Terminated", "message": cause.message or "terminated through Temporal"}
    if isinstance(cause, CancelledError):
        return {"type": "Cancelled", "message": cause.message or "cancelled through Temporal"}
    return {"type": type(cause).__name__, "message": str(cause)}


async def run_report(client: Client, workflow_id: str, *, query_timeout: timedelta = timedelta(seconds=5),
                     query_failed: bool = False) -> dict[str, Any]:
    """The run's report as JSON-ready values (see the module docstring); RunNotFound for an unknown id."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        described = await handle.describe(rpc_timeout=timedelta(seconds=10))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise RunNotFound(f"no run has the id {workflow_id}; list runs with `careloom runs list`") from None
        raise RunReportError(f"Temporal did not describe {workflow_id} ({err.message}); retry shortly") from None
    attrs = described.typed_search_attributes
    execution = ENDINGS.get(described.status, "unknown") if described.status else "unknown"
    report: dict[str, Any] = {
        "workflow_id": workflow_id, "program": described.workflow_type, "execution": execution,
        "status": attrs.get(sa.STATUS), "run_status": attrs.get(sa.STATUS),
        "member_pseudonym": attrs.get(sa.MEMBER), "started_at": _iso(described.start_time),
        "closed_at": _iso(described.close_time), "discharged_at": _iso(attrs.get(sa.DISCHARGED_AT)),
        "tcm_due": _iso(attrs.get(sa.TCM_DUE)), "failure": None, "follow_up_task": None, "answered": False,
        "pending_approvals": [], "actions": [], "verdicts": [],
    }
    if execution == "running" or (execution != "completed" and query_failed):
        bounded = min(query_timeout, timedelta(seconds=5)) if execution != "running" else query_timeout
        try:
            report.update(await handle.query("status", rpc_timeout=bounded))
            report["answered"] = True
        except Exception:  # noqa: BLE001 - no worker, or a run that cannot answer: report what Temporal knows
            pass
    try:
        if execution == "completed":
            result = await handle.result(follow_runs=False, rpc_timeout=timedelta(seconds=10))
            if isinstance(result, dict):
                report.update(result)
                report["answered"] = True
        report["run_status"] = report["status"]
        if execution not in ("running", "completed"):
            try:
                await handle.result(follow_runs=False, rpc_timeout=timedelta(seconds=10))
            except WorkflowFailureError as err:
                report["failure"] = _failure(err)
            report["status"] = execution  # the run's own word (what it was doing when it ended) stays in run_status
        if execution == "failed" or report["run_status"] == "needs_attention":
            report["follow_up_task"] = await follow_up_of(client, workflow_id, described.run_id)
    except RPCError as err:
        raise RunReportError(f"Temporal did not return {workflow_id}'s history ({err.message}); retry shortly") \
            from None
    return report
