"""``careloom gaps schedule``: the Temporal Schedule that runs the care-gap campaign (``careloom-gap-campaign``).

``create [--cron CRON] [--time-zone ZONE] [--paused]`` (cron and zone are checked before the server is asked;
defaults ``CARELOOM_GAP_CAMPAIGN_CRON``, monthly, and ``CARELOOM_PLAN_TIME_ZONE``; the campaign's page, batch and
concurrency come from ``CARELOOM_GAP_CAMPAIGN_*``), ``show``, ``pause``, ``unpause``, ``trigger`` (a campaign now;
skipped while one runs) and ``delete`` (care-gap runs are not touched). A running campaign is followed, paused and
resumed with ``careloom gaps campaign status|pause|resume WF``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import run, settings
from cli.output import fail, say
from cli.schedule import JsonFlag, act, client, print_schedule
from runtime.errors import CareloomError

__all__ = ["app"]

app = typer.Typer(help="The care-gap campaign's Temporal Schedule (monthly by default): every member evaluated, a "
                       "run started for each open gap.", no_args_is_help=True)


def _id() -> str:
    from feeds.schedule import GAP_CAMPAIGN_SCHEDULE_ID

    return GAP_CAMPAIGN_SCHEDULE_ID


@app.command("create")
def create(
    cron: Annotated[str | None, typer.Option(help="5-field cron in the plan's time zone (CARELOOM_GAP_CAMPAIGN_CRON, "
                                                  "default '0 6 1 * *').")] = None,
    time_zone: Annotated[str | None, typer.Option(help="IANA zone (CARELOOM_PLAN_TIME_ZONE).")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
) -> None:
    """Create the campaign schedule. Exit 2 on a cron or zone that does not parse, before connecting."""
    from feeds.schedule import check_campaign_cron, create_gap_campaign_schedule, next_fire

    cfg = settings()
    zone, when = time_zone or cfg.plan_time_zone, cron or cfg.gap_campaign_cron
    try:
        check_campaign_cron(when, zone)
    except CareloomError as err:
        fail(str(err), code=2)

    async def go() -> None:
        schedule_id = await create_gap_campaign_schedule(await client(), cfg, cron=when, time_zone=zone,
                                                         paused=paused)
        say(f"created {schedule_id}: '{when}' in {zone}; next run {next_fire(when, zone).isoformat()}"
            + (" (paused)" if paused else ""))

    run(go())


@app.command("show")
def show(as_json: JsonFlag = False) -> None:
    """The campaign schedule: cron, zone, paused or not, next, recent and running campaigns."""
    from feeds.schedule import describe_schedule

    async def go() -> None:
        print_schedule(await describe_schedule(await client(), _id()), as_json,
                       follow="careloom gaps campaign status")

    run(go())


@app.command("pause")
def pause(note: Annotated[str, typer.Option(help="Why (kept on the schedule).")] = "paused by an operator") -> None:
    """Start no campaign on the cron (a running one goes on: `careloom gaps campaign pause WF` pauses it)."""
    from feeds.schedule import pause_schedule

    act(lambda c: pause_schedule(c, note, _id()), "paused")


@app.command("unpause")
def unpause(note: Annotated[str, typer.Option(help="Why.")] = "unpaused by an operator") -> None:
    """Start campaigns on the cron again."""
    from feeds.schedule import unpause_schedule

    act(lambda c: unpause_schedule(c, note, _id()), "unpaused")


@app.command("trigger")
def trigger() -> None:
    """Run a campaign now (skipped while one runs); members with a run for the period are not started again."""
    from feeds.schedule import trigger_schedule

    act(lambda c: trigger_schedule(c, _id()), "triggered; see it with `careloom gaps schedule show`")


@app.command("delete")
def delete() -> None:
    """Delete the schedule (a running campaign finishes; care-gap runs are not touched)."""
    from feeds.schedule import delete_schedule

    act(lambda c: delete_schedule(c, _id()), "deleted")
