"""``careloom um metrics --year YYYY``: the CMS-0057-F public prior-authorization metrics report.

The figures and their definitions are :mod:`history.um_metrics`. The runs come from exported histories
(``--histories FOLDER``) or, without it, from Temporal: every ``PriorAuthWorkflow`` run still open or closed on or
after 1 January of the year (a request received on 31 December and decided on 2 January belongs to the year it
was received, so closing in the year is not the test), each history fetched and filtered by receipt time.
A file that is not a careloom history stops the report (exit 2, naming it): a public figure must not silently
leave a request out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.common import run, settings
from cli.output import console, fail, plain, print_json, safe

if TYPE_CHECKING:
    from collections.abc import Callable

    from temporalio.client import Client

    from history.events import RunRecord
    from history.um_metrics import PriorityFigures, UmMetricsReport
    from runtime.codec import PayloadEncryptionCodec
    from store.ledger_entries import LedgerEntry

__all__ = ["metrics", "live_runs", "runs_query", "render_html"]


def runs_query(year: int) -> str:
    """The visibility query for every prior-authorization run that may hold a request received in ``year``."""
    from history.um_metrics import year_bounds
    from workflows.run_list import PROGRAM_TYPES

    start, _ = year_bounds(year)
    return (f'WorkflowType = "{PROGRAM_TYPES["prior-auth-triage"]}" AND (ExecutionStatus = "Running" OR '
            f'CloseTime >= "{start:%Y-%m-%dT%H:%M:%SZ}")')


async def live_runs(client: Client, year: int, codec: PayloadEncryptionCodec | None, *,
                    page_size: int = 100) -> list[RunRecord]:
    """Each run :func:`runs_query` lists (paging through visibility), its history fetched and decoded.

    A run that cannot be listed, fetched or decoded is a :class:`~runtime.errors.CareloomError` naming it: the
    report is not made without it.
    """
    from temporalio.service import RPCError

    from history.events import read_run
    from runtime.errors import CareloomError

    records = []
    try:
        async for execution in client.list_workflows(runs_query(year), page_size=page_size):
            history = await client.get_workflow_handle(execution.id, run_id=execution.run_id).fetch_history()
            try:
                records.append(read_run(history, codec))
            except (CareloomError, ValueError) as err:
                raise CareloomError(f"run {execution.id}: {err}; give this command the payload keys the run was "
                                    "written with (CARELOOM_PAYLOAD_KEYS)") from None
    except RPCError as err:
        raise CareloomError(f"Temporal did not list or return the prior-authorization runs ({err.message}); "
                            "check TEMPORAL_ADDRESS and retry, or pass --histories FOLDER") from None
    return records


def _files(folder: Path) -> list[RunRecord]:
    from history.events import read_run
    from history.files import HistoryFileError, history_files, load_history
    from runtime.codec import PayloadKeyError
    from runtime.data_converter import codec_for

    if not folder.is_dir():
        fail(f"--histories {folder} is not a folder; pass the folder `careloom history export --out` wrote",
             code=2)
    try:
        paths = history_files([folder])
    except HistoryFileError as err:
        fail(str(err), code=2)
    codec, records = codec_for(settings()), []
    for path in paths:
        try:
            records.append(read_run(load_history(path).history, codec))
        except HistoryFileError as err:
            fail(f"{err}; move it out of {folder} or export it again", code=2)
        except (ValueError, PayloadKeyError) as err:
            fail(f"{path}: {err}; move it out of {folder} or export it again", code=2)
    return records


def _ledger_entries() -> list[LedgerEntry] | None:
    """The decision ledger's entries, or None where there is no records database to read (none is created)."""
    from store.connect import configured_database
    from store.ledger import DecisionLedger

    cfg = settings()
    location = cfg.database_location
    if isinstance(location, Path) and not location.exists():
        return None
    return DecisionLedger(configured_database(cfg)).entries()


def _hours(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} h" if value >= 0.01 else f"{value:.2f} h ({value * 3600:.3f} s)"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _rows(report: UmMetricsReport) -> list[tuple[str, str, str]]:
    """(figure, standard, expedited) lines, as the table and the page show them."""
    def counted(part: str, percent: str) -> Callable[[PriorityFigures], str]:
        return lambda f: f"{_percent(getattr(f, percent))} ({getattr(f, part)})"

    def line(label: str, render: Callable[[PriorityFigures], str]) -> tuple[str, str, str]:
        return label, render(report.standard), render(report.expedited)

    return [
        line("requests received", lambda f: str(f.requests)),
        line("approved", counted("approved", "percent_approved")),
        line("denied", counted("denied", "percent_denied")),
        line("partially approved", counted("partially_approved", "percent_partially_approved")),
        line("approved after appeal", counted("approved_after_appeal", "percent_approved_after_appeal")),
        line("time frame extended, then approved",
             counted("extended_then_approved", "percent_extended_then_approved")),
        line("reconsiderations (appeals)", lambda f: str(f.appeals)),
        line("pended (documentation requested)", lambda f: str(f.pended)),
        line("no determination", lambda f: str(f.no_determination)),
        line("average time to determination", lambda f: _hours(f.average_hours)),
        line("median time to determination", lambda f: _hours(f.median_hours)),
        line("determinations timed", lambda f: str(f.decided)),
    ]


def _title(report: UmMetricsReport) -> str:
    return f"Prior-authorization metrics {report.year} (CMS-0057-F)"


def _provenance(report: UmMetricsReport) -> str:
    return (f"Requests received {report.period_start:%Y-%m-%d %H:%M} UTC to {report.period_end:%Y-%m-%d %H:%M} "
            f"UTC (exclusive), by receipt time. Source: {report.source}. {report.runs_read} prior-authorization "
            f"run(s) read, {report.outside_year} received in another year, {report.other_programs} other "
            f"program(s)' histories and {report.duplicate_runs} older duplicate run(s) skipped. Decision ledger: "
            + (f"{report.ledger_only} request(s) of the year without a run read." if report.ledger_checked
               else "not compared (no records database)."))


def render_html(report: UmMetricsReport) -> str:
    """A small standalone page: the figures table, provenance and every note."""
    import html

    from evaluation.plots import html_page, html_table

    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    body = (html_table(["", "standard", "expedited"], _rows(report))
            + f"<p>{html.escape(_provenance(report))}</p><h2>Notes</h2><ul>{notes}</ul>")
    return html_page(_title(report), body)


def metrics(
    year: Annotated[int, typer.Option("--year", help="Calendar year of receipt (UTC), e.g. 2026.")],
    histories: Annotated[Path | None, typer.Option(
        "--histories", help="Folder of exported histories (`careloom history export`); without it, the runs "
                            "in Temporal (its retention only: export the year's histories for a full report).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
    as_html: Annotated[bool, typer.Option("--html", help="A standalone HTML page on standard output.")] = False,
    ledger: Annotated[bool, typer.Option(help="Compare with the decision ledger (when the records database "
                                              "exists): requests it knows of whose runs were not read.")] = True,
) -> None:
    """The CMS-0057-F public prior-authorization metrics of one year, for standard and expedited requests:
    percent approved, denied, approved after appeal, approved after an extended time frame, and average and
    median hours from receipt to determination. Exit 2 on bad input."""
    from history.um_metrics import um_metrics, year_bounds

    if as_json and as_html:
        fail("--json and --html are two outputs; choose one", code=2)
    try:
        year_bounds(year)
    except ValueError as err:
        fail(str(err), code=2)
    if histories is not None:
        records, source = _files(histories), f"exported histories in {histories}"
    else:
        from runtime.data_converter import codec_for
        from runtime.temporal_client import connect

        cfg = settings()

        async def fetch() -> list[RunRecord]:
            return await live_runs(await connect(cfg), year, codec_for(cfg))

        records, source = run(fetch()), f"Temporal namespace {cfg.temporal_namespace}"
    report = um_metrics(records, year, source=source, ledger=_ledger_entries() if ledger else None)
    if as_json:
        print_json(report)
        return
    if as_html:
        typer.echo(render_html(report))
        return
    from rich.table import Table

    table = Table(title=_title(report))
    for column in ("", "standard", "expedited"):
        table.add_column(column)
    for row in _rows(report):
        table.add_row(*map(plain, row))
    console.print(table)
    console.print(safe(_provenance(report)), soft_wrap=True, highlight=False)
    for note in report.notes:
        console.print(safe(f"- {note}"), soft_wrap=True, highlight=False)
