"""Golden histories (tests/golden/histories) replay against the current code: a change that would break
running workflows fails the build. Re-record them with tests/golden/record.py when behaviour changes on purpose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from history.files import history_files, load_history
from history.replay import replay_files
from runtime.temporal_client import DATA_CONVERTER
from store.ledger import LedgerAppend
from workflows.outreach import MemberOutreachWorkflow, OutreachInput, OutreachResult

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "histories"
SCENARIOS = {"auto-completed", "approved", "edited", "rejected", "escalated", "deferred", "ineligible", "blocked",
             "model-planned", "model-fallback"}


def test_every_scenario_has_a_golden_history() -> None:
    """Each representative outcome is checked in."""
    assert SCENARIOS == {p.stem for p in GOLDEN.glob("*.json")}


def test_golden_histories_replay_against_the_current_code() -> None:
    """All golden histories replay with no nondeterminism, in parallel processes, inside the sandbox too."""
    files = history_files([GOLDEN])
    assert {"ok"} == {o.status for o in replay_files(files, processes=2)}
    assert {"ok"} == {o.status for o in replay_files(files[:3], processes=1, sandbox=True)}


@workflow.defn(name="MemberOutreachWorkflow", sandboxed=False)
class UnsafeChange(MemberOutreachWorkflow):
    """A new first step added without a patch marker: old runs would diverge."""

    @workflow.run
    async def run(self, data: OutreachInput) -> OutreachResult:
        await workflow.execute_activity("ledger.append", LedgerAppend(entries=[]), result_type=int,
                                        start_to_close_timeout=timedelta(seconds=10))
        return await super().run(data)


@workflow.defn(name="MemberOutreachWorkflow", sandboxed=False)
class SafeChange(MemberOutreachWorkflow):
    """The same new step behind workflow.patched(): new runs take it, recorded runs replay as before."""

    @workflow.run
    async def run(self, data: OutreachInput) -> OutreachResult:
        if workflow.patched("record-run-start-in-ledger"):
            await workflow.execute_activity("ledger.append", LedgerAppend(entries=[]), result_type=int,
                                            start_to_close_timeout=timedelta(seconds=10))
        return await super().run(data)


async def _replay(workflow_class: type) -> dict[str, Exception | None]:
    histories = [load_history(p).history for p in history_files([GOLDEN])]

    async def feed() -> AsyncIterator[WorkflowHistory]:
        for history in histories:
            yield history

    replayer = Replayer(workflows=[workflow_class], data_converter=DATA_CONVERTER,
                        workflow_runner=UnsandboxedWorkflowRunner())
    found: dict[str, Exception | None] = {}
    async with replayer.workflow_replay_iterator(feed()) as results:
        async for result in results:
            found[result.history.workflow_id] = result.replay_failure
    return found


async def test_an_unpatched_change_is_caught_by_the_golden_replay() -> None:
    """Adding an activity before the agent breaks every recorded run: replay reports nondeterminism."""
    failures = await _replay(UnsafeChange)
    assert SCENARIOS == set(failures)
    assert all(isinstance(f, NondeterminismError) for f in failures.values())


async def test_the_same_change_behind_workflow_patched_still_replays_the_old_histories() -> None:
    """The worked example of a safe change: gated by workflow.patched(), every old history replays."""
    assert {name: None for name in SCENARIOS} == await _replay(SafeChange)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_history_is_an_outreach_run(name: str) -> None:
    """Each golden file loads as a MemberOutreachWorkflow history."""
    assert name == load_history(GOLDEN / f"{name}.json").history.workflow_id
