"""``careloom schedule``: the Temporal Schedule that runs the discharge sweep."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from cli.common import run, settings
from cli.output import fail, print_json, say
from runtime.errors import CareloomError

__all__ = ["JsonFlag", "act", "app", "client", "print_schedule"]

app = typer.Typer(help="The daily discharge sweep's Temporal Schedule: every discharge without an outreach run "
                       "gets one.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


async def client():  # noqa: ANN201 - temporalio.client.Client, imported when a command runs
    from runtime.temporal_client import connect

    return await connect(settings())


def act(action: Callable[[Any], Awaitable[object]], done: str) -> None:
    """Connect, do one thing to the schedule or a sweep, say it is done."""

    async def go() -> None:
        await action(await client())
        say(done)

    run(go())


@app.command("create")
def create(
    cron: Annotated[str | None, typer.Option(help="5-field cron in the plan's time zone (CARELOOM_SWEEP_CRON, "
                                                  "default '0 6 * * *').")] = None,
    time_zone: Annotated[str | None, typer.Option(help="IANA zone (CARELOOM_PLAN_TIME_ZONE).")] = None,
    batch: Annotated[int | None, typer.Option(help="Discharges per sweep run before it continues as new.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Outreach starts in flight at once.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
) -> None:
    """Create the sweep schedule (cron and zone are checked before the server is asked)."""
    from feeds.schedule import check_cron, create_schedule, next_fire

    cfg = settings()
    zone = time_zone or cfg.plan_time_zone
    try:
        check_cron(cron or cfg.sweep_cron, zone)  # before connecting: a typo is named at once
    except CareloomError as err:
        fail(str(err), code=2)

    async def go() -> None:
        schedule_id = await create_schedule(await client(), cfg, cron=cron, time_zone=zone, batch=batch,
                                            concurrency=concurrency, paused=paused)
        say(f"created {schedule_id}: '{cron or cfg.sweep_cron}' in {zone}; next run "
            f"{next_fire(cron or cfg.sweep_cron, zone).isoformat()}" + (" (paused)" if paused else ""))

    run(go())


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """careloom's schedules, with their next and recent runs."""
    from feeds.schedule import list_schedules

    async def go() -> None:
        found = await list_schedules(await client())
        if as_json:
            print_json(found)
            return
        if not found:
            say("no careloom schedules; create one with `careloom schedule create`")
        for s in found:
            say(f"{s['id']}: {', '.join(s['cron'])} ({s['time_zone']})"
                f"{' PAUSED' if s['paused'] else ''}; next {', '.join(s['next_runs'][:1]) or '-'}; "
                f"running {len(s['running'])}")

    run(go())


@app.command("show")
def show(as_json: JsonFlag = False) -> None:
    """The sweep schedule: cron, zone, paused or not, next and recent runs."""
    from feeds.schedule import describe_schedule

    async def go() -> None:
        print_schedule(await describe_schedule(await client()), as_json, follow="careloom schedule progress")

    run(go())


def print_schedule(found: dict[str, Any], as_json: bool, *, follow: str) -> None:
    """A schedule's description (:func:`feeds.schedule.describe_schedule`); ``follow``: the command that shows a
    running workflow's progress."""
    if as_json:
        print_json(found)
        return
    say(f"{found['id']}: {', '.join(found['cron'])} ({found['time_zone']})"
        f"{' PAUSED: ' + (found['note'] or '') if found['paused'] else ''}")
    say(f"next: {', '.join(found['next_runs']) or '-'}")
    for recent in found["recent_runs"]:
        say(f"ran: {recent['started']} {recent['workflow_id']}")
    for running in found["running"]:
        say(f"running: {running}  ({follow} {running})")


@app.command("progress")
def progress(workflow_id: Annotated[str, typer.Argument(help="The sweep's workflow id (`careloom schedule show`).")],
             as_json: JsonFlag = False) -> None:
    """A sweep's progress: looked at, started, existing, failed, TCM missed, cursor, paused."""
    from feeds.sweep import DischargeSweepWorkflow

    async def go() -> None:
        handle = (await client()).get_workflow_handle_for(DischargeSweepWorkflow.run, workflow_id)
        found = await handle.query(DischargeSweepWorkflow.progress)
        if as_json:
            print_json(found)
            return
        say(f"{workflow_id}: looked at {found.looked_at}, started {found.started}, existing "
            f"{found.existing}, failed {found.failed}, skipped {found.skipped}, TCM missed "
            f"{found.tcm_missed}; continued {found.continued}x"
            + ("; PAUSED" if found.paused else "") + ("; done" if found.done else ""))
        for failure in found.failures:
            say(f"  failed: {failure}")

    run(go())


@app.command("pause-sweep")
def pause_sweep(workflow_id: Annotated[str, typer.Argument(help="The running sweep's workflow id.")]) -> None:
    """Pause a running sweep between pages (the page in flight finishes); `resume-sweep` restarts it."""
    from feeds.sweep import DischargeSweepWorkflow

    act(lambda client: client.get_workflow_handle(workflow_id).signal(DischargeSweepWorkflow.pause),
         f"{workflow_id}: pausing after the page in flight")


@app.command("resume-sweep")
def resume_sweep(workflow_id: Annotated[str, typer.Argument(help="The paused sweep's workflow id.")]) -> None:
    """Resume a paused sweep."""
    from feeds.sweep import DischargeSweepWorkflow

    act(lambda client: client.get_workflow_handle(workflow_id).signal(DischargeSweepWorkflow.resume),
         f"{workflow_id}: resumed")


@app.command("backfill")
def backfill(
    since: Annotated[str, typer.Option(help="Start of the window, ISO 8601 with offset (2026-05-01T00:00:00Z).")],
    until: Annotated[str | None, typer.Option(help="End of the window (default: now).")] = None,
    batch: Annotated[int | None, typer.Option(help="Encounters per sweep run before it continues as new.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Outreach starts in flight at once.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sweep an explicit window now, outside the schedule (the watermark is not moved; nothing starts twice)."""
    from datetime import datetime

    from feeds.schedule import start_sweep

    def parse(value: str, option: str) -> datetime:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            fail(f"{option} {value!r} is not an ISO 8601 time; e.g. 2026-05-01T00:00:00Z", code=2)
            raise SystemExit(2) from None  # fail() exited already

    start, end = parse(since, "--since"), parse(until, "--until") if until else None
    cfg = settings()

    async def go() -> None:
        workflow_id = await start_sweep(await client(), cfg, since=start, until=end, batch=batch,
                                        concurrency=concurrency)
        if as_json:
            print_json({"workflow_id": workflow_id})
        else:
            say(f"started {workflow_id}; follow it with `careloom schedule progress {workflow_id}`")

    run(go())


@app.command("pause")
def pause(note: Annotated[str, typer.Option(help="Why (kept on the schedule).")] = "paused by an operator") -> None:
    """Stop starting sweeps on the cron (a running one goes on: `careloom schedule pause-sweep WF` pauses it)."""
    from feeds.schedule import pause_schedule

    act(lambda client: pause_schedule(client, note), "paused")


@app.command("unpause")
def unpause(note: Annotated[str, typer.Option(help="Why.")] = "unpaused by an operator") -> None:
    """Start sweeps on the cron again."""
    from feeds.schedule import unpause_schedule

    act(lambda client: unpause_schedule(client, note), "unpaused")


@app.command("trigger")
def trigger() -> None:
    """Run a scheduled sweep now, from the watermark (skipped if one is running)."""
    from feeds.schedule import trigger_schedule

    act(trigger_schedule, "triggered; see it with `careloom schedule show`")


@app.command("delete")
def delete() -> None:
    """Delete the schedule (running sweeps finish; outreach runs are not touched)."""
    from feeds.schedule import delete_schedule

    act(delete_schedule, "deleted")
