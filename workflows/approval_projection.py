"""The inbox over the approvals projection (:mod:`store.approval_items`), and its consistency check and rebuild.

- :func:`item_change` turns a run's :class:`~workflows.approvals.ItemChanges` into the rows the ledger activity
  writes with its entries (keyed by the activity's own workflow id, run id and workflow type);
- :func:`query_of` turns the inbox's filters into the projection's query (:func:`workflows.inbox.list_inbox`
  pages with it: one indexed SQL query, no Temporal call; opening an item reads it from its run);
- :func:`check` compares the projection with Temporal (visibility lists the running runs with pending approvals;
  each is asked for its items): rows whose run is closed or whose item is no longer pending (``stale``), pending
  items with no row (``missing``), rows of an earlier run of the workflow id (``other_run``);
  :func:`rebuild` makes the projection match (what ``careloom approvals projection check|rebuild`` run, e.g.
  after a deployment that brings the projection to runs parked before it, or after runs were terminated).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from guardrails.approvals import PendingApproval
from guardrails.policy import ROLE_RANK
from runtime import search_attributes as sa
from store.approval_items import ApprovalItems, ItemChange, ItemQuery, ItemRow, due_text
from workflows.agent_run import AgentRun
from workflows.approvals import ItemChanges

__all__ = ["ProjectionCheck", "check", "item_change", "item_row", "query_of", "rebuild"]


def item_row(item: PendingApproval, *, run_id: str, program: str) -> ItemRow:
    return ItemRow(
        workflow_id=item.workflow_id, approval_id=item.approval_id, run_id=run_id, program=program,
        queue=item.queue, required_role=item.required_role, role_rank=ROLE_RANK[item.required_role],
        priority=item.priority, due=due_text(item.sla_deadline), member_pseudonym=item.member_pseudonym,
        tool=item.tool, requested_at=due_text(item.requested_at), item=item.model_dump_json())


def item_change(changes: ItemChanges, *, workflow_id: str, run_id: str, program: str) -> ItemChange:
    """The rows a run's changes make; an item naming another workflow id than the run's is dropped."""
    return ItemChange(workflow_id=workflow_id, closed=list(changes.closed), upserts=[
        item_row(i, run_id=run_id, program=program) for i in changes.open if i.workflow_id == workflow_id])


def query_of(*, queue: str | None = None, role: str | None = None, max_role: str | None = None,
             priority: str | None = None, due_before: datetime | None = None, member: str | None = None
             ) -> ItemQuery:
    return ItemQuery(queue=queue, required_role=role, priority=priority, member_pseudonym=member,
                     max_role_rank=ROLE_RANK[max_role] if max_role else None,  # type: ignore[index]
                     due_before=due_text(due_before) if due_before else None)


@dataclass
class ProjectionCheck:
    runs: int = 0
    """Running runs with pending approvals, per visibility."""
    rows: int = 0
    stale: list[tuple[str, str]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    other_run: list[tuple[str, str]] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    """Runs that did not answer (no worker polling): not compared."""
    _pending: dict[str, tuple[str, str, list[PendingApproval]]] = field(default_factory=dict, repr=False)
    """workflow id -> (run id, workflow type, its pending items), for the rebuild."""

    @property
    def consistent(self) -> bool:
        return not (self.stale or self.missing or self.other_run)

    def as_dict(self) -> dict[str, object]:
        return {"runs": self.runs, "rows": self.rows, "consistent": self.consistent,
                "stale": [f"{w} {a}" for w, a in self.stale], "missing": [f"{w} {a}" for w, a in self.missing],
                "other_run": [f"{w} {a}" for w, a in self.other_run], "unavailable": self.unavailable}


async def _running_with_pending(client: Client) -> dict[str, tuple[str, str]]:
    """workflow id -> (run id, workflow type) of every running careloom run with pending approvals."""
    from workflows.programs import PROGRAMS  # every program's workflow and graph: only when checking

    types = ", ".join(f'"{p.workflow_type}"' for p in PROGRAMS)
    query = (f'WorkflowType IN ({types}) AND ExecutionStatus = "Running" AND '
             f"{sa.PENDING_APPROVALS.name} > 0")
    found = {}
    async for execution in client.list_workflows(query, page_size=1000):
        found[execution.id] = (execution.run_id, execution.workflow_type)
    return found


async def check(client: Client, items: ApprovalItems, *, concurrency: int = 16) -> ProjectionCheck:
    """Compare the projection with the running runs' own pending items."""
    rows = items.keys()
    running = await _running_with_pending(client)
    result = ProjectionCheck(runs=len(running), rows=len(rows))
    gate = asyncio.Semaphore(concurrency)

    async def ask(workflow_id: str, run_id: str, workflow_type: str) -> None:
        async with gate:
            try:
                pending = await client.get_workflow_handle(workflow_id, run_id=run_id).query(
                    AgentRun.approvals, rpc_timeout=timedelta(seconds=10))
            except WorkflowQueryFailedError:
                pending = []
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    result.unavailable.append(workflow_id)
                    return
                pending = []
        result._pending[workflow_id] = (run_id, workflow_type, pending)

    await asyncio.gather(*(ask(w, r, t) for w, (r, t) in running.items()))
    asked = set(result._pending)
    for (workflow_id, approval_id), row_run in sorted(rows.items()):
        if workflow_id in result.unavailable:
            continue
        run = result._pending.get(workflow_id)
        if run is None or approval_id not in {p.approval_id for p in run[2]}:
            result.stale.append((workflow_id, approval_id))
        elif row_run != run[0]:
            result.other_run.append((workflow_id, approval_id))
    for workflow_id in sorted(asked):
        _, _, pending = result._pending[workflow_id]
        result.missing += [(workflow_id, p.approval_id) for p in pending if (workflow_id, p.approval_id) not in rows]
    result.unavailable.sort()
    return result


async def rebuild(client: Client, items: ApprovalItems) -> ProjectionCheck:
    """Make the projection match the running runs (per :func:`check`); what was found before the repair."""
    found = await check(client, items)
    now = datetime.now(UTC)
    for workflow_id, (run_id, program, pending) in found._pending.items():
        items.replace_run(workflow_id, [item_row(p, run_id=run_id, program=program) for p in pending], now)
    closed = {w for w, _ in found.stale if w not in found._pending and w not in found.unavailable}
    items.remove_runs(sorted(closed))
    return found
