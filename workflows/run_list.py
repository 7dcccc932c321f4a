"""Listing careloom's runs: one visibility query per page, no workflow queried, no worker needed.

Each row comes from what the run published as search attributes (status word, member pseudonym, discharge,
TCM due) and Temporal's own execution record (program, start, end, and how it ended: a FAILED run is
``failed`` here, whatever status word it last published). Filters are checked before they reach the query:
a bad value is a :class:`RunListError` naming the option and the values it takes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

from runtime import search_attributes as sa
from runtime.errors import CareloomError
from workflows.run_report import ENDINGS

__all__ = ["PROGRAM_TYPES", "RUN_STATUSES", "RunListError", "RunRow", "RunsFilter", "RunsPage", "list_runs",
           "runs_query"]

PROGRAM_TYPES = {"post-discharge-outreach": "MemberOutreachWorkflow", "prior-auth-triage": "PriorAuthWorkflow",
                 "care-gap-closure": "CareGapWorkflow"}
"""Program name -> workflow type (the catalogue's, ``workflows.programs``, pinned by a test; not imported
here so that listing runs does not load every workflow)."""
_ENDED = {"failed": "Failed", "terminated": "Terminated", "cancelled": "Canceled", "timed_out": "TimedOut"}
_WORDS = ("starting", "gathering", "planning", "executing", "awaiting_approval", "deferred",
          "awaiting_documentation", "monitoring", "completed", "needs_attention", "ineligible", "not_discharged", "withdrawn")
RUN_STATUSES = (*_WORDS, *_ENDED, "running")
"""What ``--status`` takes: a run's status word, how Temporal says it ended, or ``running`` (any open run)."""


class RunListError(CareloomError, ValueError):
    """A filter or page token that cannot be used; the message names it and the fix."""


class RunsFilter(BaseModel):
    program: str | None = None
    status: str | None = None
    since: datetime | None = Field(default=None, description="Runs started at or after this instant.")


class RunRow(BaseModel):
    workflow_id: str
    program: str
    status: str = Field(description="The run's status word, or how it ended when it did not complete "
                                    "(failed, terminated, cancelled, timed_out).")
    member_pseudonym: str | None
    started_at: datetime
    closed_at: datetime | None
    discharged_at: datetime | None
    tcm_due: datetime | None


class RunsPage(BaseModel):
    runs: list[RunRow]
    next_page_token: str | None = Field(description="Pass to --page-token for the next page; None on the last.")


def parse_since(text: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 instant (UTC when it names no offset)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        found = datetime.fromisoformat(text)
    except ValueError:
        raise RunListError(f"--since {text!r} is not a date: give YYYY-MM-DD or an ISO 8601 instant "
                           "(2024-05-01T08:00:00Z)") from None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def runs_query(filters: RunsFilter) -> str:
    """The visibility query for careloom's runs matching the filters (values checked, never pasted raw)."""
    if filters.program is not None and filters.program not in PROGRAM_TYPES:
        raise RunListError(f"--program {filters.program!r} is not a program; use one of "
                           f"{', '.join(PROGRAM_TYPES)} (see `careloom programs list`)")
    if filters.status is not None and filters.status not in RUN_STATUSES:
        raise RunListError(f"--status {filters.status!r} is not a run status; use one of {', '.join(RUN_STATUSES)}")
    types = [PROGRAM_TYPES[filters.program]] if filters.program else sorted(PROGRAM_TYPES.values())
    clauses = [f"WorkflowType IN ({', '.join(repr(t).replace(chr(39), chr(34)) for t in types)})"]
    if filters.status in _ENDED:
        clauses.append(f'ExecutionStatus = "{_ENDED[filters.status]}"')
    elif filters.status == "running":
        clauses.append('ExecutionStatus = "Running"')
    elif filters.status is not None:
        # A run that ended failed keeps its last word (e.g. needs_attention): the word means that word only.
        clauses.append(f'{sa.STATUS.name} = "{filters.status}" AND ExecutionStatus IN ("Running", "Completed")')
    if filters.since is not None:
        clauses.append(f'StartTime >= "{filters.since.astimezone(UTC).isoformat().replace("+00:00", "Z")}"')
    return " AND ".join(clauses)


def _row(execution: WorkflowExecution) -> RunRow:
    attrs = execution.typed_search_attributes
    ended = execution.status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    program = next((name for name, t in PROGRAM_TYPES.items() if t == execution.workflow_type),
                   execution.workflow_type)
    return RunRow(
        workflow_id=execution.id, program=program,
        status=(ENDINGS.get(execution.status, "unknown") if ended and execution.status else
                attrs.get(sa.STATUS) or "starting"),
        member_pseudonym=attrs.get(sa.MEMBER), started_at=execution.start_time, closed_at=execution.close_time,
        discharged_at=attrs.get(sa.DISCHARGED_AT), tcm_due=attrs.get(sa.TCM_DUE))


_TOKEN_MARK = b"careloom-runs/1:"


def _query_tag(query: str) -> bytes:
    return hashlib.sha256(query.encode()).digest()[:8]


def _encode_token(query: str, token: bytes) -> str:
    """Temporal's token, marked as careloom's and bound to the query it pages (a token of other filters is
    refused here, not sent: the dev server answers a foreign token with retries and an opaque error)."""
    return base64.urlsafe_b64encode(_TOKEN_MARK + _query_tag(query) + token).decode().rstrip("=")


def _decode_token(query: str, text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        raw = base64.b64decode(text.encode() + b"=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    head = _TOKEN_MARK + _query_tag(query)
    if not raw.startswith(head) or len(raw) == len(head):
        raise RunListError("--page-token is not a token the previous page of this listing printed (same "
                           "--program, --status and --since); copy it whole, or leave it out for the first page")
    return raw[len(head):]


async def list_runs(client: Client, filters: RunsFilter | None = None, *, page_size: int = 50,
                    page_token: str | None = None, **rpc: Any) -> RunsPage:  # noqa: ANN401
    """One page of runs (newest first, as Temporal lists them) from ONE visibility query."""
    if not 1 <= page_size <= 1000:
        raise RunListError(f"--page-size {page_size} is out of range; give 1 to 1000")
    query = runs_query(filters or RunsFilter())
    pages = client.list_workflows(query, page_size=page_size, next_page_token=_decode_token(query, page_token),
                                  **rpc)
    try:
        await pages.fetch_next_page()
    except RPCError as err:
        raise RunListError(f"Temporal did not list the runs ({err.message}); retry shortly") from None
    token = pages.next_page_token
    return RunsPage(runs=[_row(e) for e in pages.current_page or []],
                    next_page_token=_encode_token(query, token) if token else None)
