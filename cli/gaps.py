"""``careloom gaps report --period 2026 [--measure ID ...] [--json]``: each quality measure's population counts.

Every member the care records store holds a Patient for is evaluated by the in-memory CQL engine
(:mod:`tools.quality_measures`, over :func:`tools.measure_data.member_resources`), and per measure the table (or
``--json``) shows the initial population, denominator, denominator exclusions, numerator, open gaps and closed
gaps (:func:`tools.care_gap_report.population_summary`). A period that does not parse or a measure id that is not
shipped exits 2, naming it; nothing is evaluated.

"Closed after outreach" counts the members whose gap is closed now and whose care-gap run recorded it closed
after careloom's outreach (the worker's ``care_gaps.record_closure`` record in the records store:
:func:`tools.gap_closures.count_closed_after_outreach`); a gap closed without a run, or before any contact, is
in "closed gaps" only.

``careloom gaps campaign start --period 2026 [--measure ID ...] [--page N] [--batch N] [--concurrency N]`` starts
the care-gap campaign (:class:`feeds.gap_campaign.CareGapCampaignWorkflow`) for the period: every member is
evaluated and a care-gap closure run is started for each with an open gap (a member with a run for the period is
joined, never started twice). ``status``, ``pause`` and ``resume`` take the campaign's workflow id, or ``--period``
for the one ``start`` started.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli import gaps_schedule
from cli.common import run, settings
from cli.output import console, fail, plain, print_json, safe, say

if TYPE_CHECKING:  # the CQL engine loads when a gaps command runs, not with every careloom command
    from store.sql_records import SqlCareRecordStore
    from tools.care_gap_report import MeasureSummary
    from tools.quality_measures import MeasureDefinition, MeasurementPeriod, MemberResult

__all__ = ["app", "campaign_app", "campaign_pause", "campaign_resume", "campaign_start",
           "campaign_status", "evaluate_store", "report"]

app = typer.Typer(help="Care gaps from the CQL quality measures, over the members in the care records store.",
                  no_args_is_help=True)

def _chosen(measures: list[MeasureDefinition], asked: list[str] | None) -> list[MeasureDefinition]:
    known = {m.id: m for m in measures}
    unknown = [a for a in asked or () if a not in known]
    if unknown:
        fail(f"--measure {', '.join(unknown)}: not a careloom measure; use one of {', '.join(sorted(known))}",
             code=2)
    return [known[a] for a in dict.fromkeys(asked)] if asked else measures


def evaluate_store(store: SqlCareRecordStore, measures: list[MeasureDefinition],
                   period: MeasurementPeriod) -> tuple[int, list[MemberResult]]:
    """(members evaluated, every member's result for every measure) over the store's Patients."""
    from tools.measure_data import member_resources, patient_ids
    from tools.quality_measures import evaluate_member

    members = patient_ids(store)
    results = []
    for member_id in members:
        resources = member_resources(store, member_id)
        results.extend(evaluate_member(m, resources, member_id, period) for m in measures)
    return len(members), results


def _store() -> SqlCareRecordStore | None:
    """The care records store, or None where there is no records database yet (none is created)."""
    from store.connect import configured_database
    from store.sql_records import SqlCareRecordStore

    cfg = settings()
    location = cfg.database_location
    if isinstance(location, Path) and not location.exists():
        return None
    return SqlCareRecordStore(configured_database(cfg))


def _row(measure: MeasureDefinition, summary: MeasureSummary, after_outreach: int) -> dict[str, Any]:
    return {"measure_id": measure.id, "title": measure.title, "version": measure.version,
            "numerator_means": measure.numerator_means,
            **summary.model_dump(exclude={"measure_id"}), "closed_after_outreach": after_outreach}


@app.command()
def report(
    period: Annotated[str, typer.Option("--period", help='Measurement period: a year ("2026") or inclusive dates '
                                                         '("2026-01-01/2026-12-31"), UTC.')],
    measure: Annotated[list[str] | None, typer.Option("--measure", help="A measure id (repeatable); default "
                                                                         "every shipped measure.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Per measure: denominator, numerator, exclusions, open and closed gaps over every member with a Patient in
    the care records store (in-memory CQL engine). Exit 2 on a bad period or an unknown measure."""
    from tools.care_gap_report import population_summary
    from tools.gap_closures import count_closed_after_outreach
    from tools.quality_measures import MeasureError, load_measures, measurement_period

    try:
        window = measurement_period(period)
    except MeasureError as err:
        fail(f"--period: {err}", code=2)
        return
    measures = _chosen(load_measures(), measure)
    store = _store()
    try:
        members, results = evaluate_store(store, measures, window) if store is not None else (0, [])
    except MeasureError as err:
        fail(f"{err}; fix the member's records or the measure and run the report again")
        return
    summaries = {s.measure_id: s for s in population_summary(results, [m.id for m in measures])}
    after = count_closed_after_outreach(store, results) if store is not None else {}
    rows = [_row(m, summaries[m.id], after.get(m.id, 0)) for m in measures]
    if as_json:
        print_json({"period": {"start": window.start.date().isoformat(), "end": window.end.date().isoformat()},
                    "members_evaluated": members, "engine": "memory", "measures": rows})
        return
    table = Table(title=f"Care gaps {window.start:%Y-%m-%d} to {window.end:%Y-%m-%d} ({members} member(s))")
    for column in ("measure", "denominator", "numerator", "exclusions", "open gaps", "closed gaps",
                   "closed after outreach"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*map(plain, (row["measure_id"], row["denominator"], row["numerator"],
                                   row["denominator_exclusion"], row["open_gaps"], row["closed_gaps"],
                                   row["closed_after_outreach"])))
    console.print(table)
    console.print(safe("Inverse measures (numerator = gap open): "
                       + (", ".join(r["measure_id"] for r in rows if r["numerator_means"] == "gap_open") or "none")
                       + ". Closed after outreach: closed now, and recorded closed by a care-gap run after careloom "
                       "contacted the member."), soft_wrap=True, highlight=False)


# --- the campaign -------------------------------------------------------------------------------------------

campaign_app = typer.Typer(help="The care-gap campaign: evaluate every member, start a care-gap closure run for "
                                "each with an open gap (nothing starts twice).", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")
app.add_typer(gaps_schedule.app, name="schedule")
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
CampaignId = Annotated[str | None, typer.Argument(help="The campaign's workflow id (default: the one `start` "
                                                       "names for --period).")]
PeriodOption = Annotated[str | None, typer.Option("--period", help='The campaign\'s measurement period ("2026" '
                                                                   'or "2026-01-01/2026-12-31").')]


async def _client():  # noqa: ANN202 - temporalio.client.Client, imported when a command runs
    from runtime.temporal_client import connect

    return await connect(settings())


def _campaign_id(workflow_id: str | None, period: str | None) -> str:
    """The workflow id given, or the id of the campaign started by hand for ``--period``; exit 2 without either."""
    if workflow_id:
        return workflow_id
    if not period:
        fail("give the campaign's workflow id or --period (e.g. --period 2026)", code=2)
        raise SystemExit(2)  # fail() exited already
    from feeds.gap_campaign_activities import campaign_workflow_id
    from tools.quality_measures import MeasureError, measurement_period

    try:
        window = measurement_period(period)
    except MeasureError as err:
        fail(f"--period: {err}", code=2)
        raise SystemExit(2) from None
    return campaign_workflow_id(window.start.date(), window.end.date())


@campaign_app.command("start")
def campaign_start(
    period: Annotated[str, typer.Option("--period", help='Measurement period: a year ("2026") or inclusive dates '
                                                         '("2026-01-01/2026-12-31"), UTC.')],
    measure: Annotated[list[str] | None, typer.Option("--measure", help="A measure id (repeatable); default "
                                                                         "every shipped measure.")] = None,
    page: Annotated[int | None, typer.Option("--page", min=1, max=10_000,
                                             help="Members evaluated per activity (default CARELOOM_GAP_CAMPAIGN_PAGE, 200).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", min=1, max=100_000, help="Members per campaign run "
                                              "before it continues as new (default CARELOOM_GAP_CAMPAIGN_BATCH, 2,000).")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=500,
                                                    help="Run starts in flight at once (default CARELOOM_GAP_CAMPAIGN_CONCURRENCY, 20).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Start a campaign for the period (a running one for the period is joined). Exit 2 on a bad period or an
    unknown measure, before connecting."""
    from feeds.gap_campaign_activities import start_gap_campaign
    from feeds.gap_campaign_models import campaign_input
    from tools.quality_measures import MeasureError, load_measures, measurement_period

    try:
        window = measurement_period(period)
    except MeasureError as err:
        fail(f"--period: {err}", code=2)
        return
    chosen = [m.id for m in _chosen(load_measures(), measure)] if measure else []
    cfg = settings()
    data = campaign_input(cfg, period_start=window.start.date(), period_end=window.end.date(), measure_ids=chosen,
                          page=page, batch=batch, concurrency=concurrency)

    async def go() -> None:
        workflow_id, started = await start_gap_campaign(await _client(), cfg, data)
        if as_json:
            print_json({"workflow_id": workflow_id, "started": started})
            return
        say(f"{'started' if started else 'already running:'} {workflow_id}; follow it with "
            f"`careloom gaps campaign status {workflow_id}`")

    run(go())


@campaign_app.command("status")
def campaign_status(workflow_id: CampaignId = None, period: PeriodOption = None, as_json: JsonFlag = False) -> None:
    """A campaign's progress: evaluated, open, started, existing, failed, errors, cursor, paused, done."""
    from feeds.gap_campaign import CareGapCampaignWorkflow

    target = _campaign_id(workflow_id, period)

    async def go() -> None:
        handle = (await _client()).get_workflow_handle_for(CareGapCampaignWorkflow.run, target)
        found = await handle.query(CareGapCampaignWorkflow.progress)
        if as_json:
            print_json(found)
            return
        say(f"{target}: evaluated {found.evaluated}, open {found.open}, started {found.started}, existing "
            f"{found.existing}, failed {found.failed}, errors {found.errors}; continued {found.continued}x; "
            f"cursor {found.cursor or '-'}" + ("; PAUSED" if found.paused else "")
            + ("; cancelled" if found.cancelled else "") + ("; done" if found.done else "")
            + (f"; REFUSED: {found.refused}" if found.refused else ""))
        for failure in found.failures:
            say(f"  failed: {failure}")

    run(go())


@campaign_app.command("pause")
def campaign_pause(workflow_id: CampaignId = None, period: PeriodOption = None) -> None:
    """Pause a running campaign between pages (the page in flight finishes); `resume` restarts it."""
    from feeds.gap_campaign import CareGapCampaignWorkflow

    target = _campaign_id(workflow_id, period)

    async def go() -> None:
        await (await _client()).get_workflow_handle(target).signal(CareGapCampaignWorkflow.pause)
        say(f"{target}: pausing after the page in flight")

    run(go())


@campaign_app.command("resume")
def campaign_resume(workflow_id: CampaignId = None, period: PeriodOption = None) -> None:
    """Resume a paused campaign."""
    from feeds.gap_campaign import CareGapCampaignWorkflow

    target = _campaign_id(workflow_id, period)

    async def go() -> None:
        await (await _client()).get_workflow_handle(target).signal(CareGapCampaignWorkflow.resume)
        say(f"{target}: resumed")

    run(go())
