"""The discharge sweep on the real dev server: a Temporal Schedule triggers it, it starts every discharge
without a run (and only those), continues as new, pauses and resumes, ends cleanly when cancelled, flags
discharges past their TCM window, and keeps its watermark.

Each test runs the sweep on a worker of its own (``DischargeSweepWorkflow`` and :class:`SweepActivities`
only, with the careloom plugin); the sweep starts outreach runs on the ``task_queue`` fixture's careloom
worker, as it would start them on careloom's queue in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import CancelledError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from typer.testing import CliRunner

from feeds.schedule import (
    SCHEDULE_ID,
    create_schedule,
    delete_schedule,
    describe_schedule,
    start_sweep,
    trigger_schedule,
)
from feeds.sweep import DischargeSweepWorkflow, SweepInput, SweepProgress
from feeds.sweep_activities import SweepActivities
from feeds.sweep_models import StartBatchInput, StartBatchResult
from feeds.watermarks import Watermarks
from guardrails.configured import outreach_policy
from runtime.errors import ConfigurationError
from runtime.plugin import worker_plugins
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tests.databases import fresh_location, fresh_store
from tests.fhir_factory import make_member
from worker import build_worker
from workflows.outreach_client import outreach_workflow_id, start_outreach


@dataclass
class Sweeper:
    queue: str  # where the sweep runs
    settings: Settings  # task_queue: where the outreach runs start (the careloom worker's)


class GatedStarts(SweepActivities):
    """The sweep's activities, with each batch of starts held until ``release`` is set: a batch "in flight"."""

    def __init__(self, *args: object, release: asyncio.Event) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.release = release
        self.entered = asyncio.Event()

    @activity.defn(name="feeds.start_discharges")
    async def start_batch(self, data: StartBatchInput) -> StartBatchResult:
        self.entered.set()
        await self.release.wait()
        return await SweepActivities.start_batch(self, data)


async def _terminate_running(client: Client, *queues: str) -> None:
    for queue in queues:
        async for execution in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(execution.id).terminate("test finished")


@contextlib.asynccontextmanager
async def sweep_worker(client: Client, settings: Settings, store: SqlCareRecordStore, outreach_queue: str,
                       hosts: SweepActivities | None = None) -> AsyncIterator[Sweeper]:
    """A worker running only the sweep, on its own queue; every run on either queue is terminated afterwards."""
    queue = f"test-sweep-{uuid.uuid4().hex[:10]}"
    outreach = settings.model_copy(update={"task_queue": outreach_queue})
    hosts = hosts or SweepActivities(client, outreach, store, outreach_queue)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-sweep") as pool:
        async with Worker(client, task_queue=queue, workflows=[DischargeSweepWorkflow],
                          activities=hosts.activities(), activity_executor=pool,
                          plugins=worker_plugins(client, settings)):
            try:
                yield Sweeper(queue=queue, settings=outreach)
            finally:
                await _terminate_running(client, queue, outreach_queue)


@pytest_asyncio.fixture
async def sweeper(client: Client, settings: Settings, store: SqlCareRecordStore,
                  task_queue: str) -> AsyncIterator[Sweeper]:
    async with sweep_worker(client, settings, store, task_queue) as found:
        yield found


def _window(year: int) -> tuple[datetime, datetime]:
    """A window of the past no other test discharges into (the session store is shared)."""
    start = datetime(year, 3, 1, tzinfo=UTC) + timedelta(minutes=uuid.uuid4().int % 10_000)
    return start, start + timedelta(days=5)


def _discharges(store: SqlCareRecordStore, since: datetime, n: int) -> list[tuple[str, str]]:
    return [(m.member_id, m.encounter_id) for m in
            (make_member(store, discharged_at=since + timedelta(hours=6 * (i + 1))) for i in range(n))]


async def _has_run(client: Client, salt: str, member_id: str, encounter_id: str) -> bool:
    try:
        await client.get_workflow_handle(outreach_workflow_id(member_id, encounter_id, salt)).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _scheduled_run(client: Client, queue: str) -> WorkflowHandle:
    for _ in range(100):
        async for execution in client.list_workflows(
                f"WorkflowType = 'DischargeSweepWorkflow' AND TaskQueue = '{queue}'"):
            return client.get_workflow_handle(execution.id)
        await asyncio.sleep(0.2)
    raise AssertionError("the schedule started no sweep")


async def _wait_for(handle: WorkflowHandle, check, timeout: float = 20.0) -> SweepProgress:
    for _ in range(int(timeout / 0.1)):
        progress = await handle.query(DischargeSweepWorkflow.progress)
        if check(progress):
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"progress never matched: {progress}")


async def test_a_scheduled_sweep_starts_every_discharge_without_a_run(client: Client, store, sweeper) -> None:
    """Schedule → trigger → a sweep: the discharges without a run are started, the one with a run is existing
    (nothing started twice), and a second sweep over the same window starts none."""
    since, until = _window(2013)
    people = _discharges(store, since, 3)
    ours = sweeper.settings
    salt = ours.pseudonym_salt.get_secret_value()
    _, started = await start_outreach(client, member_id=people[0][0], encounter_id=people[0][1],
                                      policy=outreach_policy(ours), task_queue=ours.task_queue, salt=salt,
                                      tool_attempts=1)
    assert started
    schedule_id = f"careloom-test-sweep-{uuid.uuid4().hex[:8]}"
    await create_schedule(client, ours, cron="0 6 * * *", schedule_id=schedule_id, paused=True,
                          task_queue=sweeper.queue,
                          sweep=SweepInput(since=since, until=until, advance_watermark=False, concurrency=2))
    try:
        described = await describe_schedule(client, schedule_id)
        assert (["0 6 * * *"], "America/New_York", True) == (
            described["cron"], described["time_zone"], described["paused"])
        await trigger_schedule(client, schedule_id)  # a paused schedule still runs when triggered
        handle = await _scheduled_run(client, sweeper.queue)
        result = SweepProgress.model_validate(await handle.result())
    finally:
        await delete_schedule(client, schedule_id)
    with pytest.raises(ConfigurationError, match="no schedule"):
        await describe_schedule(client, schedule_id)

    assert (3, 2, 1, 0, True) == (result.looked_at, result.started, result.existing, result.failed, result.done)
    assert 2 == result.tcm_missed  # discharged in 2013: started and flagged, never dropped
    for member_id, encounter_id in people:
        assert await _has_run(client, salt, member_id, encounter_id)
    again = await client.execute_workflow(
        DischargeSweepWorkflow.run, SweepInput(since=since, until=until, advance_watermark=False),
        id=f"sweep-again-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue)
    assert (3, 0, 3) == (again.looked_at, again.started, again.existing)


async def test_a_long_sweep_continues_as_new_and_carries_its_totals(client: Client, store, sweeper) -> None:
    since, until = _window(2014)
    people = _discharges(store, since, 5)
    handle = await client.start_workflow(
        DischargeSweepWorkflow.run, SweepInput(since=since, until=until, batch=2, advance_watermark=False),
        id=f"sweep-can-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue)
    result = await handle.result()
    assert (5, 5, 0, 2) == (result.looked_at, result.started, result.existing, result.continued)
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert 3 == len(runs)  # the first run and two continuations (2 + 2 + 1)
    assert {WorkflowExecutionStatus.CONTINUED_AS_NEW} == {r.status for r in runs if r.run_id != result_run(runs)}
    salt = sweeper.settings.pseudonym_salt.get_secret_value()
    for member_id, encounter_id in people:
        assert await _has_run(client, salt, member_id, encounter_id)


def result_run(runs: list) -> str:
    return next(r.run_id for r in runs if r.status == WorkflowExecutionStatus.COMPLETED)


async def test_a_paused_sweep_starts_no_new_batch_until_resumed(client: Client, settings: Settings, store,
                                                                task_queue: str) -> None:
    """Paused while a batch is in flight: that batch finishes, no new one starts (the pause even survives
    continue-as-new); the progress query shows it; resume finishes the sweep."""
    since, until = _window(2015)
    _discharges(store, since, 3)
    release = asyncio.Event()
    hosts = GatedStarts(client, settings.model_copy(update={"task_queue": task_queue}), store, task_queue,
                        release=release)
    async with sweep_worker(client, settings, store, task_queue, hosts) as sweeper:
        handle = await client.start_workflow(
            DischargeSweepWorkflow.run, SweepInput(since=since, until=until, page=1, batch=2,
                                                   advance_watermark=False),
            id=f"sweep-pause-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue)
        await asyncio.wait_for(hosts.entered.wait(), 20)
        running = await handle.query(DischargeSweepWorkflow.progress)
        assert (1, 0, False) == (running.looked_at, running.started, running.paused)
        await handle.signal(DischargeSweepWorkflow.pause)
        release.set()
        paused = await _wait_for(handle, lambda p: p.started == 1)
        await asyncio.sleep(1.0)  # time enough for a second batch, were one to start
        paused = await handle.query(DischargeSweepWorkflow.progress)
        assert (True, 1, 1, False) == (paused.paused, paused.looked_at, paused.started, paused.done)
        await handle.signal(DischargeSweepWorkflow.resume)
        result = await handle.result()
    assert (3, 3, 1, False, True) == (result.looked_at, result.started, result.continued, result.paused,
                                      result.done)


async def test_a_sweep_paused_from_the_start_starts_nothing(client: Client, store, sweeper) -> None:
    since, until = _window(2016)
    _discharges(store, since, 2)
    handle = await client.start_workflow(
        DischargeSweepWorkflow.run, SweepInput(since=since, until=until, advance_watermark=False),
        id=f"sweep-paused-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue, start_signal="pause")
    await asyncio.sleep(1.0)
    paused = await handle.query(DischargeSweepWorkflow.progress)
    assert (True, 0, 0, False) == (paused.paused, paused.looked_at, paused.started, paused.done)
    assert paused.since == since and paused.until == until
    await handle.signal(DischargeSweepWorkflow.resume)
    result = await handle.result()
    assert (2, True) == (result.started, result.done)


async def test_a_cancelled_sweep_finishes_the_batch_in_flight_and_starts_no_other(client: Client,
                                                                                 settings: Settings, store,
                                                                                 task_queue: str) -> None:
    since, until = _window(2017)
    people = _discharges(store, since, 4)
    release = asyncio.Event()
    hosts = GatedStarts(client, settings.model_copy(update={"task_queue": task_queue}), store, task_queue,
                        release=release)
    salt = settings.pseudonym_salt.get_secret_value()
    async with sweep_worker(client, settings, store, task_queue, hosts) as sweeper:
        handle = await client.start_workflow(
            DischargeSweepWorkflow.run, SweepInput(since=since, until=until, page=2, advance_watermark=False),
            id=f"sweep-cancel-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue)
        await asyncio.wait_for(hosts.entered.wait(), 20)
        await handle.cancel()
        await asyncio.sleep(0.5)
        release.set()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        assert isinstance(failure.value.cause, CancelledError)
        progress = await handle.query(DischargeSweepWorkflow.progress)
    assert (2, 2, True, False) == (progress.looked_at, progress.started, progress.cancelled, progress.done)
    started = [await _has_run(client, salt, m, e) for m, e in people]
    assert [True, True, False, False] == started  # the first page (earliest deadlines) only; none half-started


async def test_the_watermark_moves_forward_and_late_discharges_are_flagged(client: Client, settings: Settings,
                                                                          tmp_path: Path) -> None:
    """On a store of its own: the first sweep (no watermark) looks back lookback_days and starts a discharge
    past its TCM window (counted tcm_missed) and one within it; the next sweep starts from the watermark."""
    with fresh_store(tmp_path) as store:
        await _watermark_sweeps(client, settings, store)


async def _watermark_sweeps(client: Client, settings: Settings, store: SqlCareRecordStore) -> None:
    queue = f"test-outreach-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    late = make_member(store, discharged_at=now - timedelta(days=20))  # TCM's 2 business days long gone
    fresh = make_member(store, discharged_at=now - timedelta(hours=6))
    make_member(store, discharged_at=now - timedelta(days=40))  # before the lookback: not this sweep's
    async with build_worker(client, settings, store, task_queue=queue), \
            sweep_worker(client, settings, store, queue) as sweeper:
        first = await client.execute_workflow(DischargeSweepWorkflow.run, SweepInput(lookback_days=30),
                                              id=f"sweep-wm-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue)
        second = await client.execute_workflow(DischargeSweepWorkflow.run, SweepInput(lookback_days=30),
                                               id=f"sweep-wm-{uuid.uuid4().hex[:8]}", task_queue=sweeper.queue)
    assert (2, 2, 1, True) == (first.looked_at, first.started, first.tcm_missed, first.watermark_advanced)
    assert first.since is not None and first.until is not None
    assert timedelta(days=30) == first.until - first.since
    salt = settings.pseudonym_salt.get_secret_value()
    assert await _has_run(client, salt, late.member_id, late.encounter_id)
    assert await _has_run(client, salt, fresh.member_id, fresh.encounter_id)
    assert second.until == Watermarks(store.db).get("discharge-sweep")
    assert second.since == first.until - timedelta(hours=24)
    assert (1, 0, 1) == (second.looked_at, second.started, second.existing)  # the overlap looks again


async def test_a_backfill_sweeps_its_window_and_leaves_the_watermark(client: Client, store, sweeper) -> None:
    since, until = _window(2018)
    _discharges(store, since, 2)
    mark = Watermarks(store.db).get("discharge-sweep")
    workflow_id = await start_sweep(client, sweeper.settings, since=since, until=until, task_queue=sweeper.queue)
    result = await client.get_workflow_handle_for(DischargeSweepWorkflow.run, workflow_id).result()
    assert (2, 2, 2, False) == (result.looked_at, result.started, result.tcm_missed, result.watermark_advanced)
    assert mark == Watermarks(store.db).get("discharge-sweep")
    with pytest.raises(ConfigurationError, match="--since"):
        await start_sweep(client, sweeper.settings, since=until, until=since, task_queue=sweeper.queue)


def test_watermarks_never_move_back(tmp_path: Path) -> None:
    marks = Watermarks(fresh_location(tmp_path, "w.db"))
    later, earlier = datetime(2026, 5, 2, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    assert marks.get("x") is None
    assert later == marks.advance("x", later)
    assert later == marks.advance("x", earlier)
    assert later == marks.get("x")


@pytest.mark.parametrize(("cron", "zone", "names"), [
    ("0 25 * * *", "America/New_York", "--cron / CARELOOM_SWEEP_CRON"),
    ("every day", "America/New_York", "--cron / CARELOOM_SWEEP_CRON"),
    ("0 0 6 * * *", "America/New_York", "--cron / CARELOOM_SWEEP_CRON"),  # 6 fields (seconds): not ours
    ("0 6 * * *", "Mars/Olympus", "--time-zone / CARELOOM_PLAN_TIME_ZONE"),
])
async def test_a_bad_cron_or_zone_creates_no_schedule(client: Client, settings: Settings, cron: str, zone: str,
                                                      names: str) -> None:
    schedule_id = f"careloom-test-bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigurationError, match=names.replace("/", r"\/").replace("-", r"\-")) as refused:
        await create_schedule(client, settings, cron=cron, time_zone=zone, schedule_id=schedule_id)
    assert "e.g." in str(refused.value) or "such as" in str(refused.value)  # an example of a good value
    with pytest.raises(ConfigurationError, match="no schedule"):
        await describe_schedule(client, schedule_id)


def test_the_cli_refuses_a_bad_cron_before_connecting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cli.schedule import app

    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens: a connection attempt would fail
    refused = CliRunner().invoke(app, ["create", "--cron", "61 * * * *"])
    assert 2 == refused.exit_code
    assert "CARELOOM_SWEEP_CRON" in refused.output and "0 6 * * *" in refused.output
    monkeypatch.setenv("CARELOOM_SWEEP_CRON", "0 6 * *")
    assert "'0 6 * *' does not parse" in CliRunner().invoke(app, ["create"]).output
    monkeypatch.delenv("CARELOOM_SWEEP_CRON")
    zone = CliRunner().invoke(app, ["create", "--time-zone", "Eastern"])
    assert 2 == zone.exit_code and "CARELOOM_PLAN_TIME_ZONE" in zone.output
    assert SCHEDULE_ID == "careloom-discharge-sweep"


async def test_a_sweep_skips_implausible_stays_and_a_deceased_members_earlier_stay(client: Client, store,
                                                                                  sweeper) -> None:
    """In the window: a plausible discharge, a deceased member's two stays and a 7,241-day stay. The sweep
    starts two runs (the plausible one, the deceased member's latest) and counts the other two skipped
    (before: four runs, two close-episode items for one person and a 20-year "stay")."""
    since, until = _window(2012)
    plain = make_member(store, discharged_at=since + timedelta(days=4))
    deceased = make_member(store, discharged_at=since + timedelta(days=4), deceased=True, earlier_stays=1)
    endless = make_member(store, discharged_at=since + timedelta(days=4))
    encounter = store.get("Encounter", endless.encounter_id)
    encounter["period"]["start"] = (since + timedelta(days=4) - timedelta(days=7241)).isoformat()
    store.put_many([encounter])
    workflow_id = await start_sweep(client, sweeper.settings, since=since, until=until, task_queue=sweeper.queue)
    result = await client.get_workflow_handle_for(DischargeSweepWorkflow.run, workflow_id).result()

    salt = sweeper.settings.pseudonym_salt.get_secret_value()
    assert (4, 2, 2) == (result.looked_at, result.started, result.skipped)
    assert [True, True, False, False] == [await _has_run(client, salt, m, e) for m, e in (
        (plain.member_id, plain.encounter_id), (deceased.member_id, deceased.encounter_id),
        (deceased.member_id, f"{deceased.encounter_id}-prior0"), (endless.member_id, endless.encounter_id))]
