"""The care-gap campaign on the real dev server, worker and records store: six members (three diabetics with no
HbA1c this year: an open CMS122 gap; two controlled; one without diabetes) → the campaign evaluates six, starts
three care-gap runs (and only those), continues as new on the way, and a second campaign for the period starts
none (every open member is joined). Paused from its start it evaluates nothing until resumed; cancelled, it
finishes the page in flight and reads no other. A member whose evaluation fails is counted and named, and the
others are still started. The monthly schedule runs it. History
holds ids and counts, never a record.

Each test runs on a records store of its own (the session store holds other tests' members, and the campaign
walks every Patient), with a careloom worker (``worker.build_worker``: the campaign and the care-gap runs) on a
queue of its own; every run left on it is terminated afterwards (care-gap runs monitor for months).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from typer.testing import CliRunner

from feeds.gap_campaign import CampaignInput, CampaignProgress, CareGapCampaignWorkflow
from feeds.gap_campaign_activities import EVALUATION_FAILED_QUEUE, GapCampaignActivities, patient_page
from feeds.gap_campaign_models import (
    EVALUATE_PAGE,
    START_RUNS,
    EvaluatePageInput,
    EvaluatePageResult,
    StartRunsInput,
    StartRunsResult,
)
from feeds.schedule import (
    GAP_CAMPAIGN_SCHEDULE_ID,
    create_gap_campaign_schedule,
    delete_schedule,
    describe_schedule,
    trigger_schedule,
)
from runtime.errors import ConfigurationError
from runtime.plugin import worker_plugins
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tests.cli import careloom, clean_env
from tests.databases import fresh_store, session_env
from tests.fhir_factory import make_member
from tests.workflows.test_care_gap import CMS122, _diabetic, _hba1c
from worker import build_worker
from workflows.care_gap_client import care_gap_workflow_id

PERIOD = {"period_start": date(2026, 1, 1), "period_end": date(2026, 12, 31)}


@dataclass
class Population:
    store: SqlCareRecordStore
    queue: str  # the careloom worker's: campaigns and care-gap runs
    open: list[str]  # members with an open CMS122 gap
    closed: list[str]  # controlled diabetics and a member without diabetes


def _members(store: SqlCareRecordStore) -> tuple[list[str], list[str]]:
    gaps = [_diabetic(store).member_id for _ in range(3)]
    controlled = [_diabetic(store).member_id for _ in range(2)]
    store.put_many([_hba1c(mid, 6.8) for mid in controlled])
    healthy = make_member(store, birth_date=date(1960, 3, 1)).member_id
    return gaps, [*controlled, healthy]


async def _terminate_running(client: Client, queue: str) -> None:
    async for execution in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(execution.id).terminate("test finished")


@pytest_asyncio.fixture
async def population(client: Client, settings: Settings, tmp_path: Path) -> AsyncIterator[Population]:
    with fresh_store(tmp_path) as store:
        gaps, closed = _members(store)
        queue = f"test-gaps-{uuid.uuid4().hex[:10]}"
        async with build_worker(client, settings, store, task_queue=queue):
            try:
                yield Population(store=store, queue=queue, open=gaps, closed=closed)
            finally:
                await _terminate_running(client, queue)


async def _has_run(client: Client, settings: Settings, member_id: str) -> bool:
    workflow_id = care_gap_workflow_id(member_id, PERIOD["period_start"], PERIOD["period_end"],
                                       settings.pseudonym_salt.get_secret_value())
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _payload_text(value: Any) -> str:  # noqa: ANN401 - a history's JSON
    """Every payload of a history's JSON, decoded, joined: what the history carries in clear."""
    if isinstance(value, dict):
        found = [_payload_text(v) for k, v in value.items() if k != "data"]
        data = value.get("data")
        if isinstance(data, str):
            with contextlib.suppress(ValueError):
                found.append(base64.b64decode(data).decode("utf-8", "replace"))
        return "\n".join(found)
    if isinstance(value, list):
        return "\n".join(_payload_text(v) for v in value)
    return ""


async def _wait_for(handle: WorkflowHandle, check, timeout: float = 20.0) -> CampaignProgress:  # noqa: ANN001
    for _ in range(int(timeout / 0.1)):
        with contextlib.suppress(RPCError):  # the first workflow task may not have run yet
            progress = await handle.query(CareGapCampaignWorkflow.progress)
            if check(progress):
                return progress
        await asyncio.sleep(0.1)
    raise AssertionError("the campaign's progress never matched")


async def test_a_campaign_starts_a_run_for_each_open_gap_and_none_twice(client: Client, settings: Settings,
                                                                       population: Population) -> None:
    data = CampaignInput(**PERIOD, measure_ids=[CMS122], page=2, batch=4, concurrency=2)
    handle = await client.start_workflow(CareGapCampaignWorkflow.run, data, id=f"gaps-{uuid.uuid4().hex[:8]}",
                                         task_queue=population.queue)
    result = await asyncio.wait_for(handle.result(), 60)
    assert (6, 0, 3, 3, 0, 0) == (result.evaluated, result.errors, result.open, result.started, result.existing,
                                  result.failed)
    assert (1, True, False, []) == (result.continued, result.done, result.cancelled, result.failures)
    assert max(population.open + population.closed) == result.cursor
    assert PERIOD == {"period_start": result.period_start, "period_end": result.period_end}
    for member_id in population.open:
        assert await _has_run(client, settings, member_id), member_id
    for member_id in population.closed:
        assert not await _has_run(client, settings, member_id), member_id

    runs = [e async for e in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert 2 == len(runs)  # 4 members, continue-as-new, then 2 (and the empty page after them)
    assert WorkflowExecutionStatus.CONTINUED_AS_NEW in {r.status for r in runs}
    carried = "\n".join([_payload_text((await client.get_workflow_handle(handle.id, run_id=r.run_id)
                                         .fetch_history()).to_json_dict()) for r in runs])
    assert all(m in carried for m in population.open) and CMS122 in carried  # ids: whom and what it acted on
    assert not [t for t in ("E11.9", "4548-4", "99213", "1960-03-01", "valueQuantity", "birthDate") if t in carried]

    again = await client.execute_workflow(CareGapCampaignWorkflow.run, data, id=f"gaps-{uuid.uuid4().hex[:8]}",
                                          task_queue=population.queue)
    assert (6, 3, 0, 3, 0) == (again.evaluated, again.open, again.started, again.existing, again.failed)


async def test_a_campaign_started_through_temporal_with_an_unknown_measure_ends_with_the_reason(
        client: Client, settings: Settings, population: Population) -> None:
    """The CLI and the schedule check measure ids; a campaign started straight through Temporal with one the worker
    does not ship evaluates no one and starts nothing, and ends COMPLETED with the reason as its outcome (it used
    to fail non-retryably with nobody told)."""
    data = CampaignInput(**PERIOD, measure_ids=[CMS122, "cms999-no-such-measure"], page=2, batch=4)
    handle = await client.start_workflow(CareGapCampaignWorkflow.run, data, id=f"gaps-{uuid.uuid4().hex[:8]}",
                                         task_queue=population.queue)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.done and result.refused is not None
    assert "no measure cms999-no-such-measure" in result.refused and "careloom gaps report" in result.refused
    assert (0, 0, 0) == (result.evaluated, result.open, result.started)
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    for member_id in population.open:
        assert not await _has_run(client, settings, member_id), member_id


async def test_a_campaign_paused_from_its_start_evaluates_nothing_until_resumed(client: Client,
                                                                               population: Population) -> None:
    handle = await client.start_workflow(
        CareGapCampaignWorkflow.run, CampaignInput(**PERIOD, measure_ids=[CMS122], page=2, batch=4),
        id=f"gaps-paused-{uuid.uuid4().hex[:8]}", task_queue=population.queue, start_signal="pause")
    await _wait_for(handle, lambda p: p.paused and p.period_start is not None)
    await asyncio.sleep(1.0)  # time enough for a page, were one to start
    paused = await handle.query(CareGapCampaignWorkflow.progress)
    assert (True, 0, 0, None, False) == (paused.paused, paused.evaluated, paused.started, paused.cursor,
                                         paused.done)
    await handle.signal(CareGapCampaignWorkflow.pause)  # a second pause changes nothing
    await handle.signal(CareGapCampaignWorkflow.resume)
    result = await asyncio.wait_for(handle.result(), 60)
    assert (6, 3, 3, False, True) == (result.evaluated, result.open, result.started, result.paused, result.done)


class FailingFor(GapCampaignActivities):
    """The campaign's activities, with one member's evaluation failing as an engine error would."""

    def __init__(self, *args: Any, member_id: str) -> None:  # noqa: ANN401
        super().__init__(*args)
        self.member_id = member_id

    def _open_measures(self, member_id: str, measures: Any, period: Any) -> list[str]:  # noqa: ANN401
        if member_id == self.member_id:
            raise ValueError("the engine failed on a record it cannot read")
        return super()._open_measures(member_id, measures, period)


async def test_a_member_whose_evaluation_fails_is_counted_and_the_campaign_goes_on(
        client: Client, settings: Settings, population: Population) -> None:
    broken = sorted(population.open)[0]
    hosts = FailingFor(client, settings, population.store, population.queue, member_id=broken)
    queue = f"test-gaps-campaign-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-gaps") as pool:
        async with Worker(client, task_queue=queue, workflows=[CareGapCampaignWorkflow],
                          activities=hosts.activities(), activity_executor=pool,
                          plugins=worker_plugins(client, settings)):
            result = await client.execute_workflow(
                CareGapCampaignWorkflow.run, CampaignInput(**PERIOD, measure_ids=[CMS122], page=4),
                id=f"gaps-errors-{uuid.uuid4().hex[:8]}", task_queue=queue)
    assert (5, 1, 2, 2, True) == (result.evaluated, result.errors, result.open, result.started, result.done)
    assert [f"Patient/{broken}: ValueError"] == result.failures  # the id and the error type, not its text
    assert not await _has_run(client, settings, broken)
    told = [t for t in population.store.find_for_member("Task", broken)
            if t["owner"]["identifier"]["value"] == EVALUATION_FAILED_QUEUE]
    assert 1 == len(told), "a care coordinator is given the member the campaign could not evaluate"
    assert "ValueError" in json.dumps(told[0]) and "cannot read" not in json.dumps(told[0])  # never the error text


class GatedStarts(GapCampaignActivities):
    """The campaign's activities, each batch of starts held until ``release`` is set: a page "in flight"."""

    def __init__(self, *args: Any, release: asyncio.Event) -> None:  # noqa: ANN401
        super().__init__(*args)
        self.release = release
        self.entered = asyncio.Event()
        self.pages = 0

    @activity.defn(name=START_RUNS)
    async def start_runs(self, data: StartRunsInput) -> StartRunsResult:
        self.entered.set()
        await self.release.wait()
        return await GapCampaignActivities.start_runs(self, data)

    @activity.defn(name=EVALUATE_PAGE)
    def evaluate_page(self, data: EvaluatePageInput) -> EvaluatePageResult:
        self.pages += 1
        return GapCampaignActivities.evaluate_page(self, data)


async def test_a_cancelled_campaign_finishes_the_page_in_flight_and_reads_no_other(
        client: Client, settings: Settings, population: Population) -> None:
    release = asyncio.Event()
    hosts = GatedStarts(client, settings, population.store, population.queue, release=release)
    queue = f"test-gaps-campaign-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-gaps") as pool:
        async with Worker(client, task_queue=queue, workflows=[CareGapCampaignWorkflow],
                          activities=hosts.activities(), activity_executor=pool,
                          plugins=worker_plugins(client, settings)):
            handle = await client.start_workflow(
                CareGapCampaignWorkflow.run, CampaignInput(**PERIOD, measure_ids=[CMS122], page=6),
                id=f"gaps-cancel-{uuid.uuid4().hex[:8]}", task_queue=queue)
            await asyncio.wait_for(hosts.entered.wait(), 20)  # the page's starts are in flight
            await handle.cancel()
            await asyncio.sleep(0.5)
            release.set()
            with pytest.raises(WorkflowFailureError) as failure:
                await asyncio.wait_for(handle.result(), 30)
            assert isinstance(failure.value.cause, CancelledError)
            ended = await handle.query(CareGapCampaignWorkflow.progress)
    assert (6, 3, 3, True, False) == (ended.evaluated, ended.open, ended.started, ended.cancelled, ended.done)
    assert 1 == hosts.pages  # the full page said "more"; no other was read
    for member_id in population.open:
        assert await _has_run(client, settings, member_id), member_id


async def test_the_monthly_schedule_runs_a_campaign(client: Client, settings: Settings,
                                                    population: Population) -> None:
    schedule_id = f"{GAP_CAMPAIGN_SCHEDULE_ID}-test-{uuid.uuid4().hex[:8]}"
    await create_gap_campaign_schedule(client, settings, schedule_id=schedule_id, paused=True,
                                       task_queue=population.queue,
                                       campaign=CampaignInput(**PERIOD, measure_ids=[CMS122]))
    try:
        with pytest.raises(ConfigurationError, match="already exists"):
            await create_gap_campaign_schedule(client, settings, schedule_id=schedule_id, paused=True)
        described = await describe_schedule(client, schedule_id)
        assert (["0 6 1 * *"], settings.plan_time_zone, True) == (
            described["cron"], described["time_zone"], described["paused"])
        await trigger_schedule(client, schedule_id)  # a paused schedule still runs when triggered
        handle = await _scheduled_run(client, population.queue)
        result = CampaignProgress.model_validate(await asyncio.wait_for(handle.result(), 60))
    finally:
        await delete_schedule(client, schedule_id)
    assert (6, 3, 3, True) == (result.evaluated, result.open, result.started, result.done)


async def _scheduled_run(client: Client, queue: str) -> WorkflowHandle:
    for _ in range(100):
        async for execution in client.list_workflows(
                f"WorkflowType = 'CareGapCampaignWorkflow' AND TaskQueue = '{queue}'"):
            return client.get_workflow_handle(execution.id)
        await asyncio.sleep(0.2)
    raise AssertionError("the schedule started no campaign")


@pytest.mark.parametrize(("cron", "zone", "names"), [
    ("0 6 1 *", "America/New_York", "gap campaign cron '0 6 1 \\*' does not parse"),
    ("0 6 32 * *", "America/New_York", "gap campaign cron"),
    ("0 6 1 * *", "Mars/Olympus", "CARELOOM_PLAN_TIME_ZONE"),
])
async def test_a_bad_cron_or_zone_is_refused_before_the_server_is_asked(cron: str, zone: str, names: str,
                                                                        settings: Settings) -> None:
    with pytest.raises(ConfigurationError, match=names):
        await create_gap_campaign_schedule(None, settings, cron=cron, time_zone=zone)  # type: ignore[arg-type]


def test_the_keyset_page_walks_patients_in_id_order(tmp_path: Path) -> None:
    with fresh_store(tmp_path) as store:
        ids = sorted(make_member(store).member_id for _ in range(5))
        assert ids[:2] == patient_page(store, after=None, limit=2)
        assert ids[2:4] == patient_page(store, after=ids[1], limit=2)
        assert ids[4:] == patient_page(store, after=ids[3], limit=2)
        assert [] == patient_page(store, after=ids[4], limit=2)


def test_a_campaign_input_needs_both_period_ends_in_order() -> None:
    with pytest.raises(ValueError, match="both period_start and period_end"):
        CampaignInput(period_start=date(2026, 1, 1))
    with pytest.raises(ValueError, match="before period_start"):
        CampaignInput(period_start=date(2026, 12, 31), period_end=date(2026, 1, 1))


async def test_the_cli_starts_follows_pauses_and_resumes_a_campaign(client: Client, settings: Settings,
                                                                    population: Population,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``careloom gaps campaign start/pause/status/resume`` against the dev server: started and paused before a
    worker polls its queue, so the pause lands before the first page."""
    from cli.gaps import app

    queue = f"test-gaps-cli-{uuid.uuid4().hex[:8]}"
    for name, value in {**session_env(settings), "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                        "CARELOOM_TASK_QUEUE": queue}.items():
        monkeypatch.setenv(name, value)
    period = "2025-01-01/2025-12-31"  # a period of this test's own: the campaign's id is the period's

    def cli(*args: str) -> str:
        done = CliRunner().invoke(app, ["campaign", *args])
        assert 0 == done.exit_code, done.output
        return done.output

    started = await asyncio.to_thread(cli, "start", "--period", period, "--measure", CMS122, "--page", "2",
                                      "--json")
    workflow_id = json.loads(started)["workflow_id"]
    assert ("careloom-gap-campaign-20250101-20251231", True) == (workflow_id, json.loads(started)["started"])
    assert "already running" in await asyncio.to_thread(cli, "start", "--period", period)
    await asyncio.to_thread(cli, "pause", "--period", period)
    hosts = GapCampaignActivities(client, settings, population.store, population.queue)
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-gaps") as pool:
        async with Worker(client, task_queue=queue, workflows=[CareGapCampaignWorkflow],
                          activities=hosts.activities(), activity_executor=pool,
                          plugins=worker_plugins(client, settings)):
            try:
                paused = json.loads(await asyncio.to_thread(cli, "status", workflow_id, "--json"))
                assert (True, 0, False) == (paused["paused"], paused["evaluated"], paused["done"])
                assert "PAUSED" in await asyncio.to_thread(cli, "status", "--period", period)
                await asyncio.to_thread(cli, "resume", "--period", period)
                result = await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60)
            finally:
                await _terminate_running(client, queue)
    # No visit in 2025: no one is in CMS122's denominator that year, so no run is started.
    assert (6, 0, 0, False, True) == (result["evaluated"], result["open"], result["started"], result["paused"],
                                      result["done"])


def test_the_cli_refuses_a_bad_period_or_measure_before_connecting(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from cli.gaps import app

    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens: a connection attempt would fail
    period = CliRunner().invoke(app, ["campaign", "start", "--period", "26"])
    assert 2 == period.exit_code and "--period" in period.output
    measure = CliRunner().invoke(app, ["campaign", "start", "--period", "2026", "--measure", "cms999"])
    assert 2 == measure.exit_code and "cms999" in measure.output and CMS122 in measure.output
    nameless = CliRunner().invoke(app, ["campaign", "status"])
    assert 2 == nameless.exit_code and "--period" in nameless.output


async def test_the_schedule_carries_the_deployments_campaign_settings(client: Client, settings: Settings) -> None:
    configured = settings.model_copy(update={"gap_campaign_cron": "15 5 2 * *", "gap_campaign_page": 7,
                                             "gap_campaign_batch": 70, "gap_campaign_concurrency": 3})
    schedule_id = f"{GAP_CAMPAIGN_SCHEDULE_ID}-test-{uuid.uuid4().hex[:8]}"
    await create_gap_campaign_schedule(client, configured, schedule_id=schedule_id, paused=True)
    try:
        described = await client.get_schedule_handle(schedule_id).describe()
        action = described.schedule.action
        data = (await client.data_converter.decode(action.args, [CampaignInput]))[0]  # type: ignore[attr-defined]
        shown = await describe_schedule(client, schedule_id)
    finally:
        await delete_schedule(client, schedule_id)
    assert (7, 70, 3, None) == (data.page, data.batch, data.concurrency, data.period_start)
    assert ["15 5 2 * *"] == shown["cron"]


def test_the_gaps_schedule_cli_refuses_a_bad_cron_before_connecting(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    from cli.gaps import app

    monkeypatch.setenv("CARELOOM_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens: a connection attempt would fail
    refused = CliRunner().invoke(app, ["schedule", "create", "--cron", "0 6 32 * *"])
    assert 2 == refused.exit_code
    assert "CARELOOM_GAP_CAMPAIGN_CRON" in refused.output and "'0 6 32 * *' does not parse" in refused.output
    monkeypatch.setenv("CARELOOM_GAP_CAMPAIGN_CRON", "0 6 1 *")
    assert "'0 6 1 *' does not parse" in CliRunner().invoke(app, ["schedule", "create"]).output
    monkeypatch.delenv("CARELOOM_GAP_CAMPAIGN_CRON")
    zone = CliRunner().invoke(app, ["schedule", "create", "--time-zone", "Eastern"])
    assert 2 == zone.exit_code and "CARELOOM_PLAN_TIME_ZONE" in zone.output


async def test_the_gaps_schedule_cli_creates_shows_pauses_and_deletes_it(client: Client, tmp_path: Path) -> None:
    with contextlib.suppress(ConfigurationError):  # another run's leftover: this test owns the deployment's id
        await delete_schedule(client, GAP_CAMPAIGN_SCHEDULE_ID)
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path), TEMPORAL_ADDRESS=client.service_client.config.target_host,
                    CARELOOM_TASK_QUEUE=f"gaps-schedule-cli-{uuid.uuid4().hex[:6]}")  # no worker: nothing runs

    def gaps(*args: str) -> subprocess.CompletedProcess[str]:
        return careloom(env, "gaps", "schedule", *args, timeout=120)

    created = gaps("create", "--paused", "--cron", "0 7 1 * *")
    try:
        assert 0 == created.returncode, created.stderr
        assert "created careloom-gap-campaign: '0 7 1 * *'" in created.stdout and "(paused)" in created.stdout
        shown = json.loads(gaps("show", "--json").stdout)
        assert (["0 7 1 * *"], True) == (shown["cron"], shown["paused"])
        assert 0 == gaps("unpause", "--note", "month-end").returncode
        assert not (await describe_schedule(client, GAP_CAMPAIGN_SCHEDULE_ID))["paused"]
        again = gaps("create")
        assert 0 != again.returncode and "careloom gaps schedule delete" in again.stdout + again.stderr
    finally:
        deleted = gaps("delete")
    assert 0 == deleted.returncode, deleted.stderr
    missing = gaps("show")
    assert 0 != missing.returncode and "careloom gaps schedule create" in missing.stdout + missing.stderr
