"""Golden histories (tests/golden/histories) replay against the current code: a change that would break
running workflows fails the build. Re-record them with tests/golden/record.py when behaviour changes on purpose."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow

from history.files import OUTREACH_TYPE, history_files, load_history, workflow_type_of
from history.replay import ReplayOutcome, replay_files, replay_histories
from workflows.approvals import LedgerAppend
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_models import OutreachInput, OutreachResult

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "histories"
SCENARIOS = {"auto-completed", "approved", "edited", "rejected", "escalated", "deferred", "ineligible", "blocked",
             "model-planned", "model-fallback"}
"""Post-discharge outreach outcomes."""
PRIOR_AUTH_SCENARIOS = {"um-auto-approved", "um-pended", "um-denial-md-approved", "um-md-overturned", "um-expired",
                        "um-pend-answered", "um-appeal-overturned"}
CARE_GAP_SCENARIOS = {"gap-closed", "gap-no-open-gap"}
"""Care-gap closure outcomes."""
"""Prior-authorization triage outcomes."""


def test_every_scenario_has_a_golden_history() -> None:
    """Each representative outcome of both programs is checked in."""
    assert SCENARIOS | PRIOR_AUTH_SCENARIOS | CARE_GAP_SCENARIOS == {p.stem for p in GOLDEN.glob("*.json")}


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


async def _replay(workflow_class: type) -> dict[str, ReplayOutcome]:
    loaded = [(str(p), load_history(p, expected_type=OUTREACH_TYPE).history)
              for p in history_files([GOLDEN]) if p.stem in SCENARIOS]
    return {o.workflow_id: o for o in await replay_histories(loaded, workflows=[workflow_class])}


async def test_an_unpatched_change_is_caught_by_the_golden_replay() -> None:
    """Adding an activity before the agent breaks every recorded run: replay reports nondeterminism, naming
    the first diverging event (event 5, the run's first search-attribute upsert, now meets an activity)."""
    outcomes = await _replay(UnsafeChange)
    assert SCENARIOS == set(outcomes)
    assert {("nondeterministic", 5)} == {(o.status, o.first_diverging_event) for o in outcomes.values()}


async def test_the_same_change_behind_workflow_patched_still_replays_the_old_histories() -> None:
    """The worked example of a safe change: gated by workflow.patched(), every old history replays."""
    assert {name: "ok" for name in SCENARIOS} == {n: o.status for n, o in (await _replay(SafeChange)).items()}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_history_is_an_outreach_run(name: str) -> None:
    """Each golden file is a MemberOutreachWorkflow history."""
    assert OUTREACH_TYPE == workflow_type_of(load_history(GOLDEN / f"{name}.json", expected_type=None).history)


@pytest.mark.parametrize("name", sorted(PRIOR_AUTH_SCENARIOS))
def test_golden_history_is_a_prior_auth_run(name: str) -> None:
    """Each um-* golden file is a PriorAuthWorkflow history."""
    assert "PriorAuthWorkflow" == workflow_type_of(load_history(GOLDEN / f"{name}.json", expected_type=None).history)
