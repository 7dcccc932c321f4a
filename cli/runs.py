"""``careloom runs list``: careloom's runs of every program, a page at a time, from one visibility query each."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import run, settings
from cli.output import console, fail, plain, print_json, safe

__all__ = ["app"]

app = typer.Typer(help="List careloom's runs (every program).", no_args_is_help=True)


def _day(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else "-"


@app.command("list")
def list_(
    program: Annotated[str | None, typer.Option(help="post-discharge-outreach or prior-auth-triage.")] = None,
    status: Annotated[str | None, typer.Option(help=(
        "A status word (awaiting_approval, completed, needs_attention, ...), how a run ended (failed, "
        "terminated, cancelled, timed_out) or running."))] = None,
    since: Annotated[str | None, typer.Option(help="Runs started on or after: YYYY-MM-DD (UTC) or an ISO "
                                                   "instant.")] = None,
    page_size: Annotated[int, typer.Option(help="Runs per page (1-1000).")] = 50,
    page_token: Annotated[str | None, typer.Option(help="The token the previous page printed.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Program, status, member pseudonym, start, discharge and TCM due of each run, newest first. Exit 2 for a
    filter or token that cannot be used (the message names it and the values it takes)."""
    from workflows.run_list import RunListError, RunsFilter, list_runs, parse_since

    try:
        filters = RunsFilter(program=program, status=status, since=parse_since(since) if since else None)
    except RunListError as err:
        fail(str(err), code=2)
        return

    async def go() -> None:
        from runtime.temporal_client import connect

        client = await connect(settings())
        try:
            page = await list_runs(client, filters, page_size=page_size, page_token=page_token)
        except RunListError as err:
            fail(str(err), code=2)
            return
        if as_json:
            print_json(page)
            return
        from rich.table import Table

        table = Table(title=f"{len(page.runs)} run(s)" + (" (more: pass --page-token below)"
                                                          if page.next_page_token else ""))
        for column in ("workflow", "program", "status", "member", "started (UTC)", "discharged (UTC)",
                       "TCM due (UTC)"):
            table.add_column(column, no_wrap=True)
        for row in page.runs:
            table.add_row(*map(plain, (row.workflow_id, row.program, row.status, row.member_pseudonym or "-",
                                       _day(row.started_at), _day(row.discharged_at), _day(row.tcm_due))))
        console.print(table)
        if page.next_page_token:
            console.print(safe(f"next page: --page-token {page.next_page_token}"))

    run(go())
