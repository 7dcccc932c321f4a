"""The ``careloom`` command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli import admin
from cli import approvals as approvals_cli
from cli import db as db_cli
from cli import eval as eval_cli
from cli import gaps as gaps_cli
from cli import history as history_cli
from cli import listen as listen_cli
from cli import model as model_cli
from cli import monitor as monitor_cli
from cli import outreach as outreach_cli
from cli import prior_auth as prior_auth_cli
from cli import programs as programs_cli
from cli import quality as quality_cli
from cli import runs as runs_cli
from cli import schedule as schedule_cli
from cli.common import run, settings
from cli.output import console, fail, print_json, safe
from runtime.errors import CareloomError
from runtime.logging import configure_logging
from runtime.state_dir import open_private, private_state_dir, private_umask

app = typer.Typer(help="careloom: durable, agentic care-management workflows for health plans.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(outreach_cli.app, name="outreach")
app.add_typer(runs_cli.app, name="runs")
app.add_typer(approvals_cli.app, name="approvals")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.ledger_app, name="ledger")
app.add_typer(history_cli.app, name="history")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(programs_cli.app, name="programs")
app.add_typer(prior_auth_cli.app, name="um")
app.add_typer(listen_cli.app, name="listen")
app.add_typer(schedule_cli.app, name="schedule")
app.add_typer(quality_cli.app, name="quality")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(eval_cli.app, name="eval")
app.add_typer(db_cli.app, name="db")
app.add_typer(gaps_cli.app, name="gaps")
app.add_typer(model_cli.app, name="model")

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
# cli.demo imports every workflow and LangGraph (~0.5-2 s): loaded by the commands that run one, not by all.
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


@app.command()
def demo(
    exit_after: Annotated[bool, typer.Option("--exit", help="Stop after the summary instead of serving.")] = False,
    data: Annotated[Path, typer.Option(help="FHIR NDJSON folder to import.")] = SAMPLE_DATA,
    since: Annotated[str, typer.Option(help="First discharge date of the window (YYYY-MM-DD).")] = "2024-01-01",
    until: Annotated[str, typer.Option(help="Day after the last discharge date of the window.")] = "2025-01-01",
    as_json: JsonFlag = False,
) -> None:
    """The main job: embedded server + worker, sample data, an outreach run per discharge, a summary."""
    from cli import demo as demo_cli

    cfg = settings()
    log_path = private_state_dir(cfg.state_dir) / "demo.log"
    # The console is for the summary; the run's logs go to a file (identifiers only, no PHI).
    configure_logging(cfg.log_level, "json", stream=open_private(log_path))
    if not as_json:
        console.print(f"logs: {log_path}")
    run(demo_cli.run_demo(cfg, data=data, since=since, until=until, exit_after=exit_after,
                          as_json=as_json))


@app.command()
def up() -> None:
    """Embedded Temporal server (unless TEMPORAL_ADDRESS is set), a worker and the HTTP API/inbox, until Ctrl-C."""
    from cli import demo as demo_cli

    run(demo_cli.serve(settings()))


@app.command()
def api() -> None:
    """Only the HTTP API and web inbox, against a running Temporal (embedded or TEMPORAL_ADDRESS)."""
    from cli import demo as demo_cli

    run(demo_cli.serve_api(settings()))


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A folder (or one file) of FHIR Bulk Data <Type>.ndjson files, or of "
                                              "FHIR Bundle .json files (transaction, batch, collection, searchset, "
                                              "document; e.g. a Synthea export). A folder with .ndjson files is "
                                              "Bulk Data: its .json files are listed as ignored.")],
    start_outreach: Annotated[bool, typer.Option(
        "--start-outreach", help="Then start post-discharge outreach for the imported discharges that have no run "
                                 "yet (earliest TCM deadline first; existing runs are reported, not started "
                                 "again). Only discharges outreach can still help start: older than the "
                                 "lookback (CARELOOM_OUTREACH_LOOKBACK_DAYS, default the sweep's 30 days), "
                                 "implausible stays, a deceased member's earlier stays and members whose "
                                 "coverage has ended since are listed, not started. Needs Temporal (`careloom "
                                 "up`, or TEMPORAL_ADDRESS).")] = False,
    include_old: Annotated[bool, typer.Option(
        "--include-old", help="With --start-outreach: start discharges older than the lookback too (the other "
                              "checks still hold).")] = False,
    recheck_gaps: Annotated[bool, typer.Option(
        "--recheck-gaps", help="Then ask the care-gap runs (this calendar year's) of the members with "
                               "conditions, encounters, observations or procedures in the import to re-evaluate "
                               "their gaps now, not on their weekly clock. Needs Temporal.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import FHIR R4 into the care records store. Exit 1 if any line or entry was skipped (or a run failed to
    start), 2 if nothing could be imported or Temporal could not be reached for --start-outreach."""
    from store.connect import configured_database
    from store.importer import import_path
    from store.sql_records import SqlCareRecordStore

    if include_old and not start_outreach:
        fail("--include-old only changes which discharges --start-outreach starts; add --start-outreach", code=2)
    cfg = settings()
    store = SqlCareRecordStore(configured_database(cfg))
    try:
        report = import_path(store, path)
    except CareloomError as err:
        fail(str(err), code=2)
        return
    out = report.as_dict()
    unreachable: str | None = None
    if start_outreach:
        started, unreachable = run(_start_imported(cfg, store, report.encounters,  # type: ignore[misc]
                                                   include_old=include_old))
        out["outreach"] = started if unreachable is None else {"error": unreachable}
    if recheck_gaps and unreachable is None:
        rechecked, unreachable = run(_recheck_imported(cfg, report.members_with_measure_data))  # type: ignore[misc]
        out["care_gaps"] = rechecked if unreachable is None else {"error": unreachable}
    if as_json:
        print_json(out)
    else:
        for rtype, outcomes in out["by_type"].items():
            console.print(safe(f"{rtype:>14}: " + ", ".join(f"{n} {o}" for o, n in outcomes.items())))
        for problem in report.problems:
            console.print(f"[yellow]skipped[/] {safe(problem)}")
        for warning in report.warnings:  # imported, but maybe another person under a reused Patient id
            console.print(f"[yellow]warning[/] {safe(warning)}")
        if report.ignored:
            console.print(safe(f"ignored {len(report.ignored)} .json file(s) beside the Bulk Data .ndjson files "
                               f"(import Bundles from their own folder): {', '.join(report.ignored)}"))
        console.print(f"{report.total('inserted')} inserted, {report.total('updated')} updated, "
                      f"{report.total('unchanged')} unchanged, {report.skipped} skipped"
                      + (f" ({report.conflicts} for conflicting ids)" if report.conflicts else ""))
        if start_outreach and unreachable is None:
            o = out["outreach"]
            console.print(f"outreach: {o['discharges']} discharge(s): {o['started']} started, {o['existing']} "
                          f"already had a run, {o['failed']} failed, {o['tcm_missed']} started past their TCM "
                          "window (tcm_missed)")
            for error in o["errors"]:
                console.print(f"[red]not started[/] {safe(error['discharge'])}: {safe(error['error'])}")
            if o["held"]:
                console.print(safe(f"outreach: {o['held']} discharge(s) not started: " + ", ".join(
                    f"{n} {_HELD_WORDS.get(reason, reason)}" for reason, n in sorted(o["held_by_reason"].items()))))
            for held in o["not_started"]:
                console.print(f"[yellow]not started[/] {safe(held['discharge'])} ({safe(held['reason'])}): "
                              f"{safe(held['detail'])}")
        if recheck_gaps and unreachable is None:
            g = out["care_gaps"]
            console.print(f"care gaps: {len(report.members_with_measure_data)} member(s) with measure data: {g['signalled']} "
                          f"run(s) asked to re-evaluate, {g['no_run']} without a running care-gap run this year, "
                          f"{len(g['failed'])} failed")
            for failure in g["failed"]:
                console.print(f"[red]not asked[/] {safe(failure)}")
    if unreachable is not None:
        fail(f"imported, but Temporal could not be reached (no outreach started, no care-gap run asked): "
             f"{unreachable}. Then run the same command again: the import changes nothing the second time, "
             "discharges that already have a run are not started twice, and a recheck is harmless", code=2)
    if report.skipped or (start_outreach and out["outreach"]["failed"]) or (
            recheck_gaps and out["care_gaps"]["failed"]):
        raise typer.Exit(1)


async def _recheck_imported(cfg, member_ids: list[str]) -> tuple[dict | None, str | None]:
    """Ask the imported members' care-gap runs to re-evaluate (:mod:`feeds.gap_recheck`): (report, None) or
    (None, why not)."""
    from datetime import UTC, datetime

    from feeds.gap_recheck import recheck_gaps
    from runtime.temporal_client import connect

    try:
        client = await connect(cfg)
    except CareloomError as err:
        return None, str(err)
    found = await recheck_gaps(client, member_ids, salt=cfg.pseudonym_salt.get_secret_value(),
                               today=datetime.now(UTC).date())
    return found.as_dict(), None


_HELD_WORDS = {"too_old": "older than the lookback (--include-old starts them)",
               "implausible_stay": "implausible stays", "deceased_other_stay": "earlier stays of a deceased member",
               "coverage_ended": "whose coverage has ended since"}


async def _start_imported(cfg, store, encounter_ids: list[str], *, include_old: bool = False
                          ) -> tuple[dict | None, str | None]:
    """Start outreach for the discharges among these Encounters that outreach can still help (idempotent; the
    others listed, :mod:`feeds.screening`): (report, None) or (None, why not)."""
    from guardrails.configured import outreach_policy
    from datetime import UTC, datetime

    from feeds.discharges import discharge_of, start_discharges
    from feeds.screening import ScreenRules, screen
    from runtime.temporal_client import connect

    policy = outreach_policy(cfg)
    found, unreadable = [], []
    for eid in dict.fromkeys(encounter_ids):
        encounter = store.get("Encounter", eid)
        try:
            if encounter and (discharge := discharge_of(encounter, policy, cfg.plan_time_zone)):
                found.append(discharge)
        except ValueError as err:  # a partial dateTime such as "2024-05" is valid FHIR but no discharge time
            unreadable.append((f"Encounter/{eid}", (f"period.end is not a full date-time ({err}); "
                                                    "give the discharge its date and time")))
    try:
        client = await connect(cfg)
    except CareloomError as err:
        return None, str(err)
    screened = screen(store, found, ScreenRules.from_settings(cfg, include_old=include_old, policy=policy),
                      now=datetime.now(UTC))
    started = await start_discharges(client, cfg, screened.start, trigger="import", policy=policy,
                                     held=screened.held)
    started.failed.extend(unreadable)
    return {"discharges": len(found) + len(unreadable), **started.as_dict()}, None


def main() -> None:
    """The console entry point: run the command, then exit without interpreter teardown.

    Temporal's Rust client keeps threads that can outlive the event loop; when
    CPython finalizes while one of them holds a thread state, the process
    aborts with "PyGILState_Release: thread state ... must be current" after
    the command has already done its work (temporalio/sdk-python#300). Every
    command's own work ends before ``app()`` returns, so output is flushed,
    logging is shut down and the process leaves with the command's status.
    """
    # Every file careloom or a library makes (SQLite databases and their WAL, logs, exports) is 0600 from
    # its first byte, and the processes it starts inherit that: the state folder holds member data.
    private_umask()
    try:
        app()
        code = 0
    except CareloomError as err:  # e.g. the database unreachable or its schema behind: the problem and the fix
        sys.stderr.write(f"error: {err}\n")
        code = 2
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            sys.stderr.write(exit_.code + "\n")
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
