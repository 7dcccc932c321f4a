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
            history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            started = history.events[0].workflow_execution_started_event_attributes
            if any(p.metadata.get("encoding") == b"binary/encrypted" for p in started.input.payloads):
                continue  # encrypted with a key only the test that ran it held (test_codec, stacks of their own)
            replayed.append(execution.id)
            yield history

    replayer = Replayer(workflows=WORKFLOWS, plugins=[CareloomPlugin()])  # sandboxed, like the worker
    results = await replayer.replay_workflows(histories(), raise_on_replay_failure=False)

    assert {} == {wid: str(failure) for wid, failure in results.replay_failures.items()}
    assert len(replayed) >= 2
