"""Production's visibility limit in tests: on a dev server started with ``frontend.namespaceRPS.visibility=10``,
the inbox makes no visibility call at all and the gauges' run counts come from one process only, counted from
the server's own metrics."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from runtime.settings import Settings
from store.approval_items import ApprovalItems
from tests.conftest import PRODUCTION_VISIBILITY_RPS, ProductionServer, wait_for_status
from tests.fhir_factory import make_member
from tests.workflows.test_approvals import ASK_ALL_SLOW
from worker import build_worker
from workflows.inbox import InboxFilter, list_inbox
from workflows.run_gauges import RunGauges
from workflows.outreach_client import start_outreach

VISIBILITY = ("ListWorkflowExecutions", "CountWorkflowExecutions", "ScanWorkflowExecutions",
              "ListOpenWorkflowExecutions", "ListClosedWorkflowExecutions")
PARKED = 3


async def visibility_requests(server: ProductionServer) -> dict[str, tuple[float, float]]:
    """Per visibility operation: (received, refused by the limit), once the server's counters have settled (it
    reports its metrics every second or so: two scrapes 1.5 s apart must agree)."""
    last = None
    for _ in range(20):
        now = {op: await server.service_requests(op) for op in VISIBILITY}
        if now == last:
            return now
        last = now
        await asyncio.sleep(1.5)
    raise AssertionError(f"the server's visibility counters never settled: {last}")


def accepted(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], op: str) -> float:
    """Requests of ``op`` the frontend served between the two scrapes (received minus refused by the limit)."""
    return (after[op][0] - after[op][1]) - (before[op][0] - before[op][1])


async def test_inbox_and_gauges_under_production_visibility_limit(
        production_server: ProductionServer, production_client: Client, settings: Settings, store) -> None:
    client = production_client
    queue = f"test-limits-{uuid.uuid4().hex[:8]}"
    salt = settings.pseudonym_salt.get_secret_value()
    handles: list[WorkflowHandle] = []
    items = ApprovalItems(store.db)
    try:
        async with build_worker(client, settings, store, task_queue=queue):
            for _ in range(PARKED):
                member = make_member(store)
                handle, started = await start_outreach(
                    client, member_id=member.member_id, encounter_id=member.encounter_id, policy=ASK_ALL_SLOW,
                    task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1, salt=salt)
                assert started
                handles.append(handle)
            for handle in handles:
                await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)
            ours = {h.id for h in handles}

            # The inbox: the approvals projection in the records database, not one visibility call.
            before = await visibility_requests(production_server)
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # the ledger activity writes the projection a moment after the run parks
                listed = [i for i in (await list_inbox(items, InboxFilter(), page_size=500)).items
                          if i.workflow_id in ours]
                if len(listed) == 3 * PARKED or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert 3 * PARKED == len(listed)
            for _ in range(20):
                page = await list_inbox(items, InboxFilter(role="rn"), page_size=2)
                while page.next_cursor is not None:
                    page = await list_inbox(items, InboxFilter(role="rn"), page_size=2, cursor=page.next_cursor)
            after = await visibility_requests(production_server)
            assert {op: (0.0, 0.0) for op in VISIBILITY} == {
                op: (after[op][0] - before[op][0], after[op][1] - before[op][1]) for op in VISIBILITY}

            # The gauges: two processes refreshing; only the lease holder counts runs through visibility.
            a = RunGauges(client, settings, store.db, holder="a")
            b = RunGauges(client, settings, store.db, holder="b")
            before = await visibility_requests(production_server)
            started = time.perf_counter()
            for _ in range(3):
                await a.refresh()
                await b.refresh()
            took = time.perf_counter() - started
            after = await visibility_requests(production_server)
            assert 0 == b.visibility_calls
            assert a.visibility_calls > 0
            assert a.visibility_calls == accepted(before, after, "CountWorkflowExecutions")
            assert all(0 == accepted(before, after, op) for op in VISIBILITY if op != "CountWorkflowExecutions")
            refused = (after["CountWorkflowExecutions"][1] - before["CountWorkflowExecutions"][1])
            print(f"\n3 refreshes x 2 gauges at {PRODUCTION_VISIBILITY_RPS} visibility rps: {took:.1f} s, "
                  f"{a.visibility_calls} counts (holder a), 0 (holder b), {refused:.0f} refused by the limit "
                  "and retried by the client")
    finally:
        for handle in handles:
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")
