"""``careloom um``: submit prior-authorization requests (Da Vinci PAS Bundles) and read their runs.

Also :func:`refuse_if_submitter`, the CLI's check that whoever submitted a request does not decide it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.common import run, settings
from cli.output import console, fail, print_json, safe
from cli.um_metrics import metrics as um_metrics
from runtime.settings import Settings

__all__ = ["app", "refuse_if_submitter"]

app = typer.Typer(help="Utilization management: prior-authorization triage runs.", no_args_is_help=True)
app.command("metrics")(um_metrics)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _bundles(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                fail(f"{path} holds no *.json files; pass request Bundles (.json) or a folder of them", code=2)
            files += found
        elif path.is_file():
            files.append(path)
        else:
            fail(f"{path} does not exist; pass a PAS request Bundle (.json) or a folder of them", code=2)
    return files


@app.command("submit")
def submit(
    paths: Annotated[list[Path], typer.Argument(help="PAS request Bundles (.json), or folders of them.")],
    as_user: Annotated[str, typer.Option("--as", help="Who submits (may not approve the run).")] = "pa-intake",
    as_json: JsonFlag = False,
) -> None:
    """Check, store and start one triage run per request; an identical resubmission joins its run. Exit 2 if a
    request is over an intake limit (CARELOOM_PA_MAX_ITEMS, _MAX_NOTES, _MAX_NOTE_BYTES), else 1 if any was
    refused (each refusal names the problem and the fix; nothing of it is stored or started). Every request is
    a row of the access log (action prior_auth.submit, role cli)."""

    async def go() -> int:
        from guardrails.configured import prior_auth_policy
        from store.connect import configured_database
        from tools.criteria import criteria_for
        from workflows.agent_run import activity_queues
        from runtime.temporal_client import connect
        from store.access_log import AccessLog
        from store.sql_records import SqlCareRecordStore
        from tools.pas_audit import record_intake, refusal_outcome
        from tools.pas_limits import IntakeLimits
        from tools.pas_request import PriorAuthRequestError, SubmissionConflict
        from workflows.prior_auth_client import submit_prior_auth

        cfg = settings()
        client = await connect(cfg)
        store, criteria, policy = SqlCareRecordStore(configured_database(cfg)), criteria_for(cfg), prior_auth_policy(cfg)
        limits = IntakeLimits(max_items=cfg.pa_max_items, max_notes=cfg.pa_max_notes,
                              max_note_bytes=cfg.pa_max_note_bytes)
        access_log, audit = AccessLog(store.db), {"user_id": as_user, "role": "cli", "channel": "cli"}
        rows, refused, over_limit = [], 0, False
        for path in _bundles(paths):
            try:
                bundle = json.loads(path.read_text(encoding="utf-8"))
                handle, started, sub = await submit_prior_auth(
                    client, store, bundle, criteria=criteria, policy=policy, task_queue=cfg.task_queue,
                    salt=cfg.pseudonym_salt.get_secret_value(), initiated_by=as_user,
                    tool_attempts=cfg.tool_attempts, queues=activity_queues(cfg), limits=limits)
                record_intake(access_log, **audit, outcome="started" if started else "duplicate", workflow_id=handle.id)
                rows.append({"file": str(path), "workflow_id": handle.id, "started": started,
                             "priority": sub.priority, "services": [i.code for i in sub.items]})
            except json.JSONDecodeError as err:
                refused += 1
                record_intake(access_log, **audit, outcome="refused:invalid", code="invalid_json")
                rows.append({"file": str(path), "error": "invalid_json",
                             "message": f"not JSON ({err.msg} at line {err.lineno}): send a FHIR Bundle"})
            except PriorAuthRequestError as err:
                refused += 1
                outcome = refusal_outcome(err.code)
                over_limit |= outcome == "refused:limit"
                record_intake(access_log, **audit, outcome=outcome, code=err.code,
                              workflow_id=err.workflow_id if isinstance(err, SubmissionConflict) else None)
                rows.append({"file": str(path), "error": err.code, "message": str(err)})
        if as_json:
            print_json(rows)
        for row in rows if not as_json else []:
            if "error" in row:
                console.print(f"[red]refused[/] {safe(row['file'])}: {safe(row['message'])}")
            else:
                console.print(safe(f"{'started' if row['started'] else 'already exists'}: {row['workflow_id']} "
                                   f"({row['priority']}, {', '.join(row['services'])})"))
        return 2 if over_limit else min(refused, 1)

    if code := run(go()):
        raise typer.Exit(code)


@app.command("status")
def status(
    workflow_id: Annotated[str, typer.Argument(help="prior-auth-<digest>, as `um submit` printed it")],
    as_json: JsonFlag = False,
) -> None:
    """A request's status (failed, with the failure, when its run failed): proposed determination, due time,
    actions, verdicts and pending approvals."""

    async def go() -> None:
        from cli.outreach import print_report_head, read_report, when

        found = await read_report(workflow_id)
        if as_json:
            print_json(found)
            return
        print_report_head(found)
        console.print(safe(f"  {found.get('priority', '-')}, due {when(found.get('decision_due'))}  "
                           f"determination={found.get('determination') or '-'}  "
                           f"member={found.get('member_pseudonym') or '-'}"))
        for action in found.get("actions", []):
            console.print(safe(f"  {action['action_id']:<28} {action['status']:<18} "
                               f"{action.get('reference') or action.get('reason') or ''}"))
        for item in found.get("pending_approvals", []):
            console.print("  [yellow]pending[/] " + safe(
                f"{item['approval_id']} in {item['queue']} needs {item['required_role']}"
                f"{' (+ second reviewer)' if item.get('dual_signoff') and not item.get('signoffs') else ''}"))

    run(go())


def refuse_if_submitter(cfg: Settings, workflow_ids: list[str], user_id: str) -> None:
    """Exit 1 (refused, forbidden) when ``user_id`` submitted the request of any of these runs: a request's
    submitter never decides it. ``careloom approvals`` calls it before a decision is signed."""
    from store.connect import configured_database
    from runtime.errors import DecisionRefused
    from store.submissions import SubmissionStore, refuse_submitter

    db = configured_database(cfg)
    try:
        for workflow_id in dict.fromkeys(workflow_ids):
            refuse_submitter(SubmissionStore(db), workflow_id, user_id)
    except DecisionRefused as err:
        fail(f"refused ({err.code}): {err}")
    finally:
        db.close()
