"""The discharge sweep's Temporal Schedule: create, list, pause, unpause, trigger, delete.

One schedule, ``careloom-discharge-sweep``, runs :class:`~feeds.sweep.DischargeSweepWorkflow` on a cron
in the plan's time zone (``CARELOOM_SWEEP_CRON``, ``CARELOOM_PLAN_TIME_ZONE``). Overlap policy SKIP: a sweep
still running when the next is due already covers what the next would (starts are idempotent), so the
late one is skipped rather than queued behind it. The cron and time zone are checked here, before the
server is asked, so a typo is an error naming the option, not a schedule that never fires.

A second schedule, ``careloom-gap-campaign`` (:func:`create_gap_campaign_schedule`), runs the care-gap campaign
(:class:`~feeds.gap_campaign.CareGapCampaignWorkflow`) monthly by default; the describe, pause, unpause, trigger
and delete functions take its id as ``schedule_id``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from feeds.gap_campaign import CareGapCampaignWorkflow
from feeds.gap_campaign_models import CampaignInput, campaign_input
from feeds.sweep import DischargeSweepWorkflow, SweepInput
from runtime.errors import ConfigurationError
from runtime.settings import Settings

__all__ = [
    "GAP_CAMPAIGN_SCHEDULE_ID",
    "SCHEDULE_ID",
    "check_cron",
    "check_campaign_cron",
    "create_gap_campaign_schedule",
    "create_schedule",
    "delete_schedule",
    "describe_schedule",
    "list_schedules",
    "next_fire",
    "pause_schedule",
    "start_sweep",
    "trigger_schedule",
    "unpause_schedule",
]

SCHEDULE_ID = "careloom-discharge-sweep"
GAP_CAMPAIGN_SCHEDULE_ID = "careloom-gap-campaign"
"""The care-gap campaign's schedule (describe, pause, unpause, trigger and delete take it as ``schedule_id``)."""
CRON_EXAMPLE = "'0 6 * * *' for 06:00 every day or '30 7 * * 1-5' on weekdays"


def check_cron(cron: str, time_zone: str) -> None:
    """ConfigurationError naming the option unless ``cron`` is a 5-field cron and ``time_zone`` an IANA zone."""
    fields = cron.split()
    if len(fields) != 5 or not croniter.is_valid(cron):
        raise ConfigurationError(
            f"the sweep cron {cron!r} does not parse (--cron / CARELOOM_SWEEP_CRON): give 5 fields, minute hour "
            f"day-of-month month day-of-week, e.g. {CRON_EXAMPLE}")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {time_zone!r} (--time-zone / CARELOOM_PLAN_TIME_ZONE): use an IANA name such as "
            "America/New_York or America/Chicago") from None


async def create_schedule(client: Client, settings: Settings, *, cron: str | None = None,
                          time_zone: str | None = None, batch: int | None = None, concurrency: int | None = None,
                          schedule_id: str = SCHEDULE_ID, paused: bool = False,
                          sweep: SweepInput | None = None, task_queue: str | None = None) -> str:
    """Create the schedule (ConfigurationError if it exists or its cron or zone is wrong); its id.

    The cron and zone are checked before the server is asked. The sweep's input (batch, concurrency,
    lookback) is fixed when the schedule is created: delete and create it again to change them. Sweeps
    run on ``task_queue`` (default ``settings.task_queue``: careloom's worker).
    """
    cron, time_zone = cron or settings.sweep_cron, time_zone or settings.plan_time_zone
    check_cron(cron, time_zone)
    data = sweep or SweepInput(lookback_days=settings.sweep_lookback_days, batch=batch or settings.sweep_batch,
                               concurrency=concurrency or settings.sweep_concurrency)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(DischargeSweepWorkflow.run, data, id=f"{schedule_id}-run",
                                           task_queue=task_queue or settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=paused, note="created by careloom schedule create"),
    )
    try:
        await client.create_schedule(schedule_id, schedule, memo={"cron": cron, "time_zone": time_zone})
    except ScheduleAlreadyRunningError:
        raise ConfigurationError(f"schedule {schedule_id} already exists; `careloom schedule delete` it first, "
                                 "or pause/unpause it") from None
    return schedule_id


def check_campaign_cron(cron: str, time_zone: str) -> None:
    """ConfigurationError naming the gap campaign's cron or zone unless both are valid."""
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ConfigurationError(
            f"the gap campaign cron {cron!r} does not parse (--cron / CARELOOM_GAP_CAMPAIGN_CRON): give 5 fields, minute hour day-of-month month "
            "day-of-week, e.g. '0 6 1 * *' for 06:00 on the first day of every month")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {time_zone!r} for the gap campaign (CARELOOM_PLAN_TIME_ZONE): use an IANA name "
            "such as America/New_York or America/Chicago") from None


async def create_gap_campaign_schedule(client: Client, settings: Settings, *, cron: str | None = None,
                                       time_zone: str | None = None, campaign: CampaignInput | None = None,
                                       schedule_id: str = GAP_CAMPAIGN_SCHEDULE_ID, paused: bool = False,
                                       task_queue: str | None = None) -> str:
    """Create the care-gap campaign's schedule (monthly by default, in the plan's time zone); its id.

    ``cron`` defaults to ``settings.gap_campaign_cron``, ``campaign`` to the campaign settings
    (:func:`~feeds.gap_campaign_models.campaign_input`). Each scheduled campaign evaluates the calendar year it
    starts in unless ``campaign`` fixes a period; members
    who have a run for the period already are joined, never started again, so a monthly campaign only starts the
    members whose gaps opened since the last one. Overlap policy SKIP, as for the sweep. ConfigurationError if
    the schedule exists or the cron or zone is wrong (checked before the server is asked).
    """
    time_zone = time_zone or settings.plan_time_zone
    cron = cron or settings.gap_campaign_cron
    check_campaign_cron(cron, time_zone)
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(CareGapCampaignWorkflow.run, campaign or campaign_input(settings),
                                           id=f"{schedule_id}-run", task_queue=task_queue or settings.task_queue),
        spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=time_zone),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(paused=paused, note="created by careloom"),
    )
    try:
        await client.create_schedule(schedule_id, schedule, memo={"cron": cron, "time_zone": time_zone})
    except ScheduleAlreadyRunningError:
        raise ConfigurationError(f"schedule {schedule_id} already exists; `careloom gaps schedule delete` it first, "
                                 "or pause/unpause it") from None
    return schedule_id


async def describe_schedule(client: Client, schedule_id: str = SCHEDULE_ID) -> dict[str, Any]:
    try:
        described = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            create = "gaps schedule create" if schedule_id == GAP_CAMPAIGN_SCHEDULE_ID else "schedule create"
            raise ConfigurationError(f"no schedule {schedule_id}; create it with `careloom {create}`") from None
        raise
    spec, state, info = described.schedule.spec, described.schedule.state, described.info
    # The server keeps cron expressions as calendar specs; the memo keeps them as they were given.
    cron = await described.memo_value("cron", None)
    return {"id": schedule_id, "cron": [cron] if cron else list(spec.cron_expressions),
            "time_zone": spec.time_zone_name,
            "paused": state.paused, "note": state.note,
            "next_runs": [t.astimezone(UTC).isoformat() for t in info.next_action_times[:3]],
            "recent_runs": [{"workflow_id": a.action.workflow_id, "started": a.started_at.isoformat()}
                            for a in info.recent_actions[-5:] if hasattr(a.action, "workflow_id")],
            "running": [r.workflow_id for r in info.running_actions]}


async def list_schedules(client: Client) -> list[dict[str, Any]]:
    ids = [s.id async for s in await client.list_schedules()]
    return [await describe_schedule(client, i) for i in sorted(ids) if i.startswith("careloom-")]


async def pause_schedule(client: Client, note: str, schedule_id: str = SCHEDULE_ID) -> None:
    await describe_schedule(client, schedule_id)
    await client.get_schedule_handle(schedule_id).pause(note=note)


async def unpause_schedule(client: Client, note: str, schedule_id: str = SCHEDULE_ID) -> None:
    await describe_schedule(client, schedule_id)
    await client.get_schedule_handle(schedule_id).unpause(note=note)


async def trigger_schedule(client: Client, schedule_id: str = SCHEDULE_ID) -> None:
    """Run the sweep now (skipped, per the overlap policy, if one is running)."""
    await describe_schedule(client, schedule_id)
    await client.get_schedule_handle(schedule_id).trigger(overlap=ScheduleOverlapPolicy.SKIP)


async def delete_schedule(client: Client, schedule_id: str = SCHEDULE_ID) -> None:
    await describe_schedule(client, schedule_id)
    await client.get_schedule_handle(schedule_id).delete()


async def start_sweep(client: Client, settings: Settings, *, since: datetime, until: datetime | None = None,
                      batch: int | None = None, concurrency: int | None = None,
                      task_queue: str | None = None) -> str:
    """A one-off sweep of an explicit window (a backfill), outside the schedule; its workflow id.

    It does not move the watermark (the scheduled sweeps keep theirs); starts stay idempotent, so a
    backfill over a window the schedule already swept only reports ``existing``.
    """
    end = until or datetime.now(UTC)
    if since.tzinfo is None or end.tzinfo is None:
        raise ConfigurationError("give --since and --until with a UTC offset, e.g. 2026-05-01T00:00:00Z")
    since, end = since.astimezone(UTC), end.astimezone(UTC)
    if since >= end:
        raise ConfigurationError(f"--since ({since.isoformat()}) must be before --until ({end.isoformat()})")
    data = SweepInput(since=since, until=end, batch=batch or settings.sweep_batch,
                      concurrency=concurrency or settings.sweep_concurrency, advance_watermark=False)
    workflow_id = f"careloom-discharge-backfill-{since:%Y%m%dT%H%M%SZ}-{end:%Y%m%dT%H%M%SZ}"
    handle = await client.start_workflow(
        DischargeSweepWorkflow.run, data, id=workflow_id, task_queue=task_queue or settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    return handle.id


def next_fire(cron: str, time_zone: str, after: datetime | None = None) -> datetime:
    """When the cron fires next after ``after`` (now), in UTC: shown by ``schedule create``."""
    check_cron(cron, time_zone)
    start = (after or datetime.now(UTC)).astimezone(ZoneInfo(time_zone))
    return croniter(cron, start).get_next(datetime).astimezone(UTC)
