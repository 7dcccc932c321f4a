"""``careloom gaps report --period 2026 [--measure ID ...] [--json]``: each quality measure's population counts.

Every member the care records store holds a Patient for is evaluated by the in-memory CQL engine
(:mod:`tools.quality_measures`, over :func:`tools.measure_data.member_resources`), and per measure the table (or
``--json``) shows the initial population, denominator, denominator exclusions, numerator, open gaps and closed
gaps (:func:`tools.care_gap_report.population_summary`). A period that does not parse or a measure id that is not
shipped exits 2, naming it; nothing is evaluated.

"Gaps closed after careloom's outreach" needs the care-gap campaign's runs, which do not exist yet: it is printed
as "not tracked yet" and, in ``--json``, ``closed_after_outreach.tracked`` is false with no count. It is never
estimated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cli.common import settings
from cli.output import console, fail, plain, print_json, safe

if TYPE_CHECKING:  # the CQL engine loads when a gaps command runs, not with every careloom command
    from store.sql_records import SqlCareRecordStore
    from tools.care_gap_report import MeasureSummary
    from tools.quality_measures import MeasureDefinition, MeasurementPeriod, MemberResult

__all__ = ["NOT_TRACKED", "app", "evaluate_store", "report"]

app = typer.Typer(help="Care gaps from the CQL quality measures, over the members in the care records store.",
                  no_args_is_help=True)

NOT_TRACKED = ("not tracked yet: counting gaps closed after careloom's outreach needs the care-gap campaign's "
               "runs, which careloom does not have yet")
"""What the report says instead of a figure for gaps closed after outreach."""


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


def _row(measure: MeasureDefinition, summary: MeasureSummary) -> dict[str, Any]:
    return {"measure_id": measure.id, "title": measure.title, "version": measure.version,
            "numerator_means": measure.numerator_means,
            **summary.model_dump(exclude={"measure_id"}),
            "closed_after_outreach": {"tracked": False, "count": None, "why": NOT_TRACKED}}


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
    rows = [_row(m, summaries[m.id]) for m in measures]
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
                                   "not tracked yet")))
    console.print(table)
    console.print(safe("Inverse measures (numerator = gap open): "
                       + (", ".join(r["measure_id"] for r in rows if r["numerator_means"] == "gap_open") or "none")
                       + f". Closed after outreach: {NOT_TRACKED}."), soft_wrap=True, highlight=False)
