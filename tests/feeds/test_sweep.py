"""The discharge sweep on the real dev server: a Temporal Schedule triggers it, it starts every discharge
without a run (and only those), continues as new, pauses and resumes, and keeps its watermark."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from feeds.schedule import (
    create_schedule,
    delete_schedule,
    describe_schedule,
    trigger_schedule,
)
from feeds.watermarks import Watermarks
from runtime.errors import ConfigurationError
from runtime.settings import Settings
from store.records import SqliteCareRecordStore
from tests.fhir_factory import make_member
from worker import build_worker
from workflows.outreach_client import outreach_workflow_id, start_outreach
from workflows.sweep import DischargeSweepWorkflow, SweepInput, SweepProgress


@pytest_asyncio.fixture
async def ours(client: Client, settings: Settings, task_queue: str) -> AsyncIterator[Settings]:
    """Settings whose task queue is this test's worker's; every run on it is terminated afterwards."""
    yield settings.model_copy(update={"task_queue": task_queue})
    async for execution in client.list_workflows(f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(execution.id).terminate("test finished")


def _window(year: int) -> tuple[datetime, datetime]:
    """A window of the past no other test discharges into (the session store is shared)."""
    start = datetime(year, 3, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 10_000)
    return start, start + timedelta(days=5)


def _discharges(store: SqliteCareRecordStore, since: datetime, n: int) -> list[tuple[str, str]]:
    return [(m.member_id, m.encounter_id) for m in
            (make_member(store, discharged_at=since + timedelta(hours=6 * (i + 1))) for i in range(n))]


async def _sweep_run(client: Client, task_queue: str) -> WorkflowHandle:
    for _ in range(100):
        async for execution in client.list_workflows(
                f"WorkflowType = 'DischargeSweepWorkflow' AND TaskQueue = '{task_queue}'"):
            return client.get_workflow_handle(execution.id)
        await asyncio.sleep(0.2)
    raise AssertionError("the schedule started no sweep")


async def test_a_scheduled_sweep_starts_every_discharge_without_a_run(client: Client, store, ours) -> None:
    since, until = _window(2013)
    people = _discharges(store, since, 3)
    salt = ours.pseudonym_salt.get_secret_value()
    await start_outreach(client, member_id=people[0][0], encounter_id=people[0][1], policy=ours.guardrail_policy(),
                         task_queue=ours.task_queue, salt=salt, tool_attempts=1)
    schedule_id = f"careloom-test-sweep-{uuid.uuid4().hex[:8]}"
    await create_schedule(client, ours, cron="0 6 * * *", schedule_id=schedule_id, paused=True,
                          sweep=SweepInput(since=since, until=until, advance_watermark=False, concurrency=2))
    try:
        assert ["0 6 * * *"] == (await describe_schedule(client, schedule_id))["cron"]
        await trigger_schedule(client, schedule_id)
        result: SweepProgress = SweepProgress.model_validate(await (await _sweep_run(client, ours.task_queue)).result())
    finally:
        await delete_schedule(client, schedule_id)

    assert (3, 2, 1, 0) == (result.looked_at, result.started, result.existing, result.failed)
    assert 2 == result.tcm_missed  # discharged in 2013: started and flagged, never dropped
    for member_id, encounter_id in people:
        await client.get_workflow_handle(outreach_workflow_id(member_id, encounter_id, salt)).describe()
    again = await client.execute_workflow(
        DischargeSweepWorkflow.run, SweepInput(since=since, until=until, advance_watermark=False),
        id=f"sweep-again-{uuid.uuid4().hex[:8]}", task_queue=ours.task_queue)
    assert (0, 3) == (again.started, again.existing)


async def test_a_long_sweep_continues_as_new_and_carries_its_totals(client: Client, store, ours) -> None:
    since, until = _window(2014)
    _discharges(store, since, 5)
    handle = await client.start_workflow(
        DischargeSweepWorkflow.run, SweepInput(since=since, until=until, batch=2, advance_watermark=False),
        id=f"sweep-can-{uuid.uuid4().hex[:8]}", task_queue=ours.task_queue)
    result = await handle.result()
    assert (5, 5, 2) == (result.looked_at, result.started, result.continued)
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert 3 == len(runs)  # the first run and two continuations


async def test_a_paused_sweep_starts_nothing_until_resumed(client: Client, store, ours) -> None:
    since, until = _window(2015)
    _discharges(store, since, 2)
    handle = await client.start_workflow(
        DischargeSweepWorkflow.run, SweepInput(since=since, until=until, advance_watermark=False),
        id=f"sweep-pause-{uuid.uuid4().hex[:8]}", task_queue=ours.task_queue, start_signal="pause")
    await asyncio.sleep(1.0)
    paused = await handle.query(DischargeSweepWorkflow.progress)
    assert (True, 0, False) == (paused.paused, paused.started, paused.done)
    await handle.signal(DischargeSweepWorkflow.resume)
    result = await handle.result()
    assert (2, True) == (result.started, result.done)


async def test_the_watermark_moves_forward_so_the_next_sweep_starts_from_it(client: Client, settings: Settings,
                                                                          tmp_path: Path) -> None:
    """On a store of its own: the first sweep (no watermark) looks back lookback_days, the next from its end."""
    store = SqliteCareRecordStore(tmp_path / "records.db")
    queue = f"test-sweep-{uuid.uuid4().hex[:8]}"
    mine = settings.model_copy(update={"task_queue": queue})
    _discharges(store, datetime.now(UTC) - timedelta(hours=20), 2)  # 14 h and 8 h ago: TCM window open
    async with build_worker(client, mine, store, task_queue=queue):
        first = await client.execute_workflow(DischargeSweepWorkflow.run, SweepInput(lookback_days=7),
                                              id=f"sweep-wm-{uuid.uuid4().hex[:8]}", task_queue=queue)
        second = await client.execute_workflow(DischargeSweepWorkflow.run, SweepInput(lookback_days=7),
                                               id=f"sweep-wm-{uuid.uuid4().hex[:8]}", task_queue=queue)
        async for execution in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(execution.id).terminate("test finished")
    assert (2, 0) == (first.started, first.tcm_missed)
    assert second.until == Watermarks(store.path).get("discharge-sweep")
    assert second.since == first.until - timedelta(hours=24)
    assert (0, 2) == (second.started, second.existing)  # the overlap looks again; nothing is started twice


def test_watermarks_never_move_back(tmp_path: Path) -> None:
    marks = Watermarks(tmp_path / "w.db")
    later, earlier = datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    assert later == marks.advance("x", later)
    assert later == marks.advance("x", earlier)
    assert later == marks.get("x")


@pytest.mark.parametrize(("cron", "zone", "names"), [
    ("0 25 * * *", "America/New_York", "--cron / CARELOOM_SWEEP_CRON"),
    ("every day", "America/New_York", "--cron / CARELOOM_SWEEP_CRON"),
    ("0 6 * * *", "Mars/Olympus", "--time-zone / CARELOOM_PLAN_TIME_ZONE"),
])
async def test_a_bad_cron_or_zone_creates_no_schedule(client: Client, ours, cron: str, zone: str,
                                                      names: str) -> None:
    schedule_id = f"careloom-test-bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigurationError, match=names.replace("/", r"\/").replace("-", r"\-")):
        await create_schedule(client, ours, cron=cron, time_zone=zone, schedule_id=schedule_id)
    with pytest.raises(ConfigurationError, match="no schedule"):
        await describe_schedule(client, schedule_id)
