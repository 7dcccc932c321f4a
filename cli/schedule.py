"""``careloom schedule``: the Temporal Schedule that runs the discharge sweep."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import run, settings
from cli.output import console, fail, print_json
from runtime.errors import CareloomError

app = typer.Typer(help="The daily discharge sweep's Temporal Schedule: every discharge without an outreach run "
                       "gets one.", no_args_is_help=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


async def _client():  # noqa: ANN202
    from runtime.temporal_client import connect

    return await connect(settings())


@app.command("create")
def create(
    cron: Annotated[str | None, typer.Option(help="5-field cron in the plan's time zone (CARELOOM_SWEEP_CRON, "
                                                  "default '0 6 * * *').")] = None,
    time_zone: Annotated[str | None, typer.Option(help="IANA zone (CARELOOM_PLAN_TIME_ZONE).")] = None,
    batch: Annotated[int | None, typer.Option(help="Discharges per sweep run before it continues as new.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Outreach starts in flight at once.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
) -> None:
    """Create the sweep schedule."""
    from feeds.schedule import check_cron, create_schedule, next_fire

    cfg = settings()
    zone = time_zone or cfg.plan_time_zone
    try:
        check_cron(cron or cfg.sweep_cron, zone)  # before connecting: a typo is named at once
    except CareloomError as err:
        fail(str(err), code=2)

    async def go() -> None:
        schedule_id = await create_schedule(await _client(), cfg, cron=cron, time_zone=zone, batch=batch,
                                            concurrency=concurrency, paused=paused)
        console.print(f"created {schedule_id}: '{cron or cfg.sweep_cron}' in {zone}; next run "
                      f"{next_fire(cron or cfg.sweep_cron, zone).isoformat()}" + (" (paused)" if paused else ""))

    run(go())


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """careloom's schedules, with their next and recent runs."""
    from feeds.schedule import list_schedules

    async def go() -> None:
        found = await list_schedules(await _client())
        if as_json:
            print_json(found)
            return
        if not found:
            console.print("no careloom schedules; create one with `careloom schedule create`")
        for s in found:
            console.print(f"{s['id']}: {', '.join(s['cron'])} ({s['time_zone']})"
                          f"{' PAUSED' if s['paused'] else ''}; next {', '.join(s['next_runs'][:1]) or '-'}; "
                          f"running {len(s['running'])}")

    run(go())


@app.command("pause")
def pause(note: Annotated[str, typer.Option(help="Why (kept on the schedule).")] = "paused by an operator") -> None:
    """Stop starting sweeps (a running one goes on; pause it with a signal if needed)."""
    from feeds.schedule import pause_schedule

    async def go() -> None:
        await pause_schedule(await _client(), note)
        console.print("paused")

    run(go())


@app.command("unpause")
def unpause(note: Annotated[str, typer.Option(help="Why.")] = "unpaused by an operator") -> None:
    """Start sweeps on the cron again."""
    from feeds.schedule import unpause_schedule

    async def go() -> None:
        await unpause_schedule(await _client(), note)
        console.print("unpaused")

    run(go())


@app.command("trigger")
def trigger() -> None:
    """Run a sweep now (skipped if one is running)."""
    from feeds.schedule import trigger_schedule

    async def go() -> None:
        await trigger_schedule(await _client())
        console.print("triggered")

    run(go())


@app.command("delete")
def delete() -> None:
    """Delete the schedule (running sweeps finish; outreach runs are not touched)."""
    from feeds.schedule import delete_schedule

    async def go() -> None:
        await delete_schedule(await _client())
        console.print("deleted")

    run(go())
