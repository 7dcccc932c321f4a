"""``careloom outreach``: start one discharge's outreach run, and read a run as it stands.

``status`` reads the run's report (:mod:`workflows.run_report`): Temporal's own word on how the run ended (a
FAILED run says ``failed`` with the failure's type and message, not the last status word it published), the
discharge and TCM due dates, then the run's actions and verdicts. Nothing here imports a workflow or LangGraph
at module level: `careloom outreach status` starts in a fraction of a second.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.common import run, settings
from cli.output import console, fail, print_json, safe

__all__ = ["app", "print_report_head", "when"]

app = typer.Typer(help="Start and inspect post-discharge outreach runs.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def when(value: str | None) -> str:
    """An ISO instant from a report as ``YYYY-MM-DD HH:MM UTC``, or ``-``."""
    if not value:
        return "-"
    from datetime import UTC, datetime

    return f"{datetime.fromisoformat(value).astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _missing_records(cfg: Any, member: str, encounter: str) -> str | None:  # noqa: ANN401 - Settings
    """Why this discharge cannot be started (the member or the encounter unknown, or not the member's)."""
    from store.connect import configured_database
    from store.sql_records import SqlCareRecordStore
    from store.records import member_of

    db = configured_database(cfg)
    try:
        store = SqlCareRecordStore(db)
        if store.get("Patient", member) is None:
            return (f"no Patient {member!r} in the care records store; import the member's records first "
                    "(`careloom import <folder>`) or check --member")
        found = store.get("Encounter", encounter)
        if found is None:
            return (f"no Encounter {encounter!r} in the care records store; import the stay first "
                    "(`careloom import <folder>`) or check --encounter")
        if member_of(found) != member:
            return (f"Encounter {encounter!r} is not a stay of Patient {member!r} (its subject is "
                    f"{(found.get('subject') or {}).get('reference', 'missing')}); pass the member the stay "
                    "belongs to")
    finally:
        db.close()
    return None


@app.command("start")
def outreach_start(
    member: Annotated[str, typer.Option(help="Patient id.")],
    encounter: Annotated[str, typer.Option(help="Discharge (inpatient) Encounter id.")],
    as_user: Annotated[str, typer.Option("--as", help="Who starts the run (may not approve it).")] = "system",
    as_json: JsonFlag = False,
) -> None:
    """Start post-discharge outreach for one discharge (the same episode never runs twice). Exit 2, with nothing
    started, when the records store lacks the member or the encounter, or the encounter is another member's."""
    cfg = settings()
    if (problem := _missing_records(cfg, member, encounter)) is not None:
        fail(problem, code=2)

    async def go() -> None:
        from guardrails.configured import outreach_policy
        from workflows.agent_run import activity_queues
        from runtime.temporal_client import connect
        from workflows.outreach_client import start_outreach

        client = await connect(cfg)
        handle, started = await start_outreach(
            client, member_id=member, encounter_id=encounter, policy=outreach_policy(cfg),
            task_queue=cfg.task_queue, initiated_by=as_user, tool_attempts=cfg.tool_attempts,
            queues=activity_queues(cfg),
            salt=cfg.pseudonym_salt.get_secret_value())
        if as_json:
            print_json({"workflow_id": handle.id, "started": started})
        else:
            console.print(safe(f"{'started' if started else 'already exists'}: {handle.id}"))

    run(go())


def print_report_head(report: dict[str, Any]) -> None:
    """The lines every program's status shares: how the run stands or ended, and why."""
    failure = report.get("failure")
    head = f"status={report['status']}"
    if failure:
        head += f" ({failure['type']}: {failure['message']})"
    console.print(f"[bold]{safe(report['workflow_id'])}[/]  " + safe(head))
    if report["execution"] not in ("running", "completed"):
        console.print(safe(f"  ended {when(report.get('closed_at'))}; the run's last status: "
                           f"{report.get('run_status') or '-'}"))
    if report.get("follow_up_task"):
        console.print(safe(f"  follow-up for a person: {report['follow_up_task']}"))
    if report["execution"] == "running" and not report.get("answered"):
        console.print("  [yellow]the run did not answer[/] (no worker polling its task queue? start one with "
                      "`careloom up`): actions and pending approvals are not shown")


async def read_report(workflow_id: str) -> dict[str, Any]:
    """The run's report, or exit 1 naming the problem (an unknown id, Temporal unreachable)."""
    from runtime.temporal_client import connect
    from workflows.run_report import RunReportError, run_report

    client = await connect(settings())
    try:
        return await run_report(client, workflow_id)
    except RunReportError as err:
        fail(str(err))
        raise  # fail() exits; this keeps type checkers honest


@app.command("status")
def outreach_status(
    workflow_id: Annotated[str, typer.Argument(help="outreach-<member pseudonym>-<episode digest>")],
    as_json: JsonFlag = False,
) -> None:
    """Show a run's status (failed, with the failure, when it failed), discharge and TCM due dates, actions,
    verdicts and pending approvals."""

    async def go() -> None:
        report = await read_report(workflow_id)
        if as_json:
            print_json(report)
            return
        print_report_head(report)
        console.print(safe(
            f"  member={report.get('member_pseudonym') or '-'}  discharged={when(report.get('discharged_at'))}  "
            f"TCM due={when(report.get('tcm_due'))}  LACE={report.get('lace', '-')}  "
            f"planner={report.get('planner') or '-'}"))
        for action in report.get("actions", []):
            extra = action.get("reference") or action.get("reason") or ""
            console.print(safe(f"  {action['action_id']:<18} {action['tool']:<16} {action['status']:<18} {extra}"))
        for verdict in report.get("verdicts", []):
            console.print(safe(f"  verdict {verdict['action_id']:<18} {verdict['decision']:<17} "
                               f"{'; '.join(verdict['reasons'])}"))
        for item in report.get("pending_approvals", []):
            console.print("  [yellow]pending[/] " + safe(f"{item['approval_id']} needs {item['required_role']} "
                                                         f"digest={item['digest']}"))

    run(go())
