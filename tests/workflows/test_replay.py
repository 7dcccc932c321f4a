"""Every outreach history recorded in this session replays against the current workflow code."""

from __future__ import annotations

from collections.abc import AsyncIterator

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from runtime.plugin import CareloomPlugin
from tests.conftest import StartRun
from tests.fhir_factory import make_member
from worker import WORKFLOWS


async def test_all_recorded_histories_replay_deterministically(start_run: StartRun, store, client: Client) -> None:
    """Histories of completed, ineligible, failed and parked runs replay with no nondeterminism."""
    await (await start_run(make_member(store))).result()
    await (await start_run(make_member(store, coverage_end="2001-01-01"))).result()
    replayed: list[str] = []

    async def histories() -> AsyncIterator[WorkflowHistory]:
        async for execution in client.list_workflows('WorkflowType = "MemberOutreachWorkflow"'):
            if execution.task_queue.startswith("codec-"):
                continue  # encrypted with a key only tests/runtime/test_codec.py held
            replayed.append(execution.id)
            yield await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()

    replayer = Replayer(workflows=WORKFLOWS, plugins=[CareloomPlugin()])  # sandboxed, like the worker
    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)

    assert {} == {wid: str(failure) for wid, failure in results.replay_failures.items()}
    assert len(replayed) >= 2
