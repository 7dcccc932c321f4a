"""``careloom approvals``: the cross-run inbox and decisions, from the command line."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import run, settings
from cli.output import console, fail, plain, print_json, safe
from cli.prior_auth import refuse_if_submitter
from runtime.temporal_client import connect

app = typer.Typer(help="Pending approvals across all runs, and decisions on them.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
WorkflowArg = Annotated[str, typer.Argument(help="Workflow id (outreach-<member>-<encounter>).")]
ApprovalArg = Annotated[str, typer.Argument(help="Approval id, e.g. a3-care-plan.1")]
DigestOpt = Annotated[str, typer.Option(help="Digest of the action you reviewed (from `approvals show`).")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Your user id (local users file).")]
TokenOpt = Annotated[str | None, typer.Option(help="Your API token or IdP bearer token (instead of --as).")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why (required to reject; recorded in the ledger).")]


def _identity(cfg, as_user: str | None, token: str | None):  # noqa: ANN001, ANN202
    from api.auth import acting_identity
    from api.identity import AuthError

    try:
        return acting_identity(cfg, as_user=as_user, token=token)
    except AuthError as err:
        fail(str(err), code=2)


@app.command("list")
def list_(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    role: Annotated[str | None, typer.Option(help="Only items this role decides: care_coordinator, rn, md.")] = None,
    priority: Annotated[str | None, typer.Option(help="routine or urgent.")] = None,
    due_before: Annotated[datetime | None, typer.Option(help="Only items due before this time (ISO).")] = None,
    page_size: Annotated[int, typer.Option(help="Items per page.", min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pending approvals across every program's running runs, earliest SLA deadline first (from the approvals
    projection in the records database: no Temporal call)."""
    from pydantic import ValidationError

    from workflows.inbox import InboxFilter, list_inbox

    from api.filters import visibility_value
    from runtime.errors import DecisionRefused

    try:
        filters = InboxFilter(queue=visibility_value("--queue", queue), role=role, priority=priority,
                              due_before=due_before)
    except DecisionRefused as err:  # not a queue name: named here, not a traceback
        fail(str(err), code=2)
        return
    except ValidationError as err:
        fail(f"invalid filter: {err.errors()[0]['loc'][0]}: {err.errors()[0]['msg']}", code=2)
        return

    async def go() -> None:
        from store.approval_items import ApprovalItems
        from store.connect import configured_database

        try:
            page = await list_inbox(ApprovalItems(configured_database(settings())), filters, page_size=page_size,
                                    cursor=cursor)
        except ValueError as err:
            fail(f"--cursor: {err}; leave it out for the first page", code=2)
            return
        if as_json:
            print_json([i.model_dump(mode="json") for i in page.items])
            return
        table = Table(title=f"{len(page.items)} of {page.total_items} pending approval(s), {page.total_runs} run(s)")
        for column in ("due", "queue", "role", "priority", "workflow", "approval", "tool", "digest"):
            table.add_column(column, overflow="fold")
        for i in page.items:
            table.add_row(*map(plain, (i.sla_deadline.strftime("%Y-%m-%d %H:%M:%SZ"), i.queue, i.required_role,
                                       i.priority, i.workflow_id, i.approval_id, i.tool, i.digest[:12])))
        console.print(table)
        if page.next_cursor:
            console.print(f"more: --cursor {safe(page.next_cursor)}")

    run(go())


@app.command()
def show(workflow_id: WorkflowArg, approval_id: ApprovalArg, as_json: JsonFlag = False) -> None:
    """One pending approval in full: the exact action, its digest, context, rationale and evidence."""
    from workflows.inbox import DecisionRejected, get_approval

    async def go() -> None:
        cfg = settings()
        try:
            item = await get_approval(await connect(cfg), workflow_id, approval_id)
        except DecisionRejected as err:
            fail(f"{err}; see `careloom approvals list`")
            return
        if as_json:
            print_json(item)
            return
        console.print(f"[bold]{safe(item.approval_id)}[/] in {safe(item.workflow_id)}: {safe(item.tool)}, queue "
                      f"{safe(item.queue)}, needs {safe(item.required_role)}, {safe(item.priority)}, due "
                      f"{item.sla_deadline.isoformat()}", soft_wrap=True)
        console.print(f"digest: {safe(item.digest)}", soft_wrap=True, highlight=False)
        console.print(f"why a human: {safe('; '.join(item.reasons))}", soft_wrap=True)
        console.print(f"rationale: {safe(item.rationale)}", soft_wrap=True)
        console.print(f"evidence: {safe(', '.join(item.evidence))}", soft_wrap=True)
        console.print(f"confidence: {item.confidence:.2f} ("
                      + safe(", ".join(f"{s.name}={s.value:.2f}x{s.weight:.2f}" for s in item.signals)) + ")")
        risk_model = getattr(item.context, "risk_model", None)
        if risk_model:
            console.print(f"readmission model: {safe(risk_model)} (prioritises outreach, never a coverage decision)",
                          soft_wrap=True, highlight=False)
            for line in getattr(item.context, "risk_explanation", []):
                console.print(f"  {safe(line)}", soft_wrap=True, highlight=False)
            if not getattr(item.context, "risk_explanation", []) and item.context.risk_model_note:
                console.print(f"  {safe(item.context.risk_model_note)}", soft_wrap=True, highlight=False)
        elif getattr(item.context, "risk_model_note", None):
            console.print(f"readmission model: {safe(item.context.risk_model_note)}", soft_wrap=True)
        if item.signoffs:
            console.print("signed off by: " + safe(", ".join(f"{s.approver} ({s.role})" for s in item.signoffs)))
        console.print_json(item.arguments.model_dump_json())

    run(go())


def _decide(workflow_id: str, approval_id: str, *, digest: str, as_user: str | None, token: str | None,
            decision: str, reason: str | None = None, arguments: object = None, queue: str | None = None,
            as_json: bool = False) -> None:
    from pydantic import ValidationError

    from guardrails.approvals import ApprovalDecision
    from guardrails.configured import signer
    from workflows.inbox import DecisionRejected, decide

    cfg = settings()
    who = _identity(cfg, as_user, token)
    refuse_if_submitter(cfg, [workflow_id], who.user_id)  # a request's submitter never decides it
    try:
        payload = ApprovalDecision(approval_id=approval_id, digest=digest, decision=decision, approver=who.user_id,
                                   role=who.role, reason=reason, arguments=arguments, queue=queue)
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"invalid decision: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", code=2)
        return

    async def go() -> None:
        try:
            result = await decide(await connect(cfg), workflow_id, payload, signer=signer(cfg))
        except DecisionRejected as err:
            fail(f"refused ({err.code}): {err}")
            return
        if as_json:
            print_json(result)
        else:
            console.print(safe(f"{result.outcome}: {result.approval_id} by {result.approver} ({result.role}) at "
                               f"{result.decided_at.isoformat()}"), soft_wrap=True)

    run(go())


@app.command()
def approve(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt, as_user: AsOpt = None,
            token: TokenOpt = None, reason: ReasonOpt = None, as_json: JsonFlag = False) -> None:
    """Approve exactly the action you reviewed."""
    _decide(workflow_id, approval_id, digest=digest, as_user=as_user, token=token, decision="approve",
            reason=reason, as_json=as_json)


@app.command()
def reject(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt,
           reason: Annotated[str, typer.Option(help="Why (required, recorded).")], as_user: AsOpt = None,
           token: TokenOpt = None, as_json: JsonFlag = False) -> None:
    """Reject an action, with a reason."""
    _decide(workflow_id, approval_id, digest=digest, as_user=as_user, token=token, decision="reject",
            reason=reason, as_json=as_json)


@app.command()
def edit(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt,
         arguments: Annotated[str, typer.Option(help="New arguments: a JSON object or @file.json.")],
         as_user: AsOpt = None, token: TokenOpt = None, reason: ReasonOpt = None, as_json: JsonFlag = False) -> None:
    """Edit an action's arguments and approve the edited action (re-validated and re-guarded)."""
    _decide(workflow_id, approval_id, digest=digest, as_user=as_user, token=token, decision="edit",
            reason=reason, arguments=parse_arguments(arguments), as_json=as_json)


@app.command()
def reassign(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt,
             queue: Annotated[str, typer.Option(help="Target queue.")], as_user: AsOpt = None,
             token: TokenOpt = None, reason: ReasonOpt = None, as_json: JsonFlag = False) -> None:
    """Move an item to another queue (its clock restarts there; the role it needs never drops)."""
    _decide(workflow_id, approval_id, digest=digest, as_user=as_user, token=token, decision="reassign",
            reason=reason, queue=queue, as_json=as_json)


@app.command()
def bulk(
    decision: Annotated[str, typer.Argument(help="approve or reject")],
    items: Annotated[str, typer.Option(help="JSON list of {workflow_id, approval_id, digest} (e.g. the output of "
                                            "`approvals list --json`), a file path, or - for stdin.")],
    tool: Annotated[str, typer.Option(help="Every item must be this tool (homogeneous selection).")],
    as_user: AsOpt = None, token: TokenOpt = None, reason: ReasonOpt = None, as_json: JsonFlag = False,
) -> None:
    """Approve or reject a selected set of homogeneous low-risk items; each is validated and reported."""
    from pydantic import TypeAdapter, ValidationError

    from guardrails.configured import signer

    from workflows.inbox import BulkItem, decide_bulk

    if decision not in ("approve", "reject"):
        fail("bulk decisions are approve or reject", code=2)
    raw = sys.stdin.read() if items == "-" else (Path(items).read_text() if Path(items).exists() else items)
    try:
        selected = TypeAdapter(list[BulkItem]).validate_python(
            [{k: i[k] for k in ("workflow_id", "approval_id", "digest")} for i in json.loads(raw)])
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as err:
        fail(f"--items must be a JSON list of objects with workflow_id, approval_id and digest ({err})", code=2)
        return
    cfg = settings()
    who = _identity(cfg, as_user, token)
    refuse_if_submitter(cfg, [i.workflow_id for i in selected], who.user_id)

    async def go() -> None:
        results = await decide_bulk(await connect(cfg), selected, decision=decision, tool=tool,
                                    approver=who.user_id, role=who.role, reason=reason, signer=signer(cfg))
        if as_json:
            print_json([r.model_dump(mode="json") for r in results])
        else:
            for r in results:
                console.print(safe(f"{'ok ' if r.ok else 'ERR'} {r.workflow_id} {r.approval_id} "
                                   f"{r.result.outcome if r.result else f'{r.error_code}: {r.error}'}"), soft_wrap=True)
            console.print(f"{sum(r.ok for r in results)} of {len(results)} decided")
        if not all(r.ok for r in results):
            raise SystemExit(1)

    run(go())


def parse_arguments(text: str) -> object:
    """Edit arguments from JSON text or @file."""
    from pydantic import ValidationError

    from guardrails.actions import ACTION_ARGUMENTS

    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        return ACTION_ARGUMENTS.validate_python(json.loads(raw))
    except json.JSONDecodeError as err:
        fail(f"--arguments is not valid JSON ({err.msg}); pass a JSON object or @file.json")
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"--arguments invalid at {'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    return None


projection_app = typer.Typer(help="The approvals projection the inbox lists from: compare it with Temporal, "
                                  "rebuild it.", no_args_is_help=True)
app.add_typer(projection_app, name="projection")


def _projection_run(rebuild: bool, as_json: bool) -> None:
    from store.approval_items import ApprovalItems
    from store.connect import configured_database
    from workflows import approval_projection

    async def go() -> None:
        cfg = settings()
        items = ApprovalItems(configured_database(cfg))
        client = await connect(cfg)
        found = await (approval_projection.rebuild if rebuild else approval_projection.check)(client, items)
        if as_json:
            print_json(found.as_dict() | {"rebuilt": rebuild})
        else:
            console.print(f"{found.runs} running run(s) with pending approvals, {found.rows} projection row(s): "
                          f"{len(found.stale)} stale, {len(found.missing)} missing, {len(found.other_run)} of an "
                          f"earlier run, {len(found.unavailable)} run(s) did not answer")
            for label, pairs in (("stale", found.stale), ("missing", found.missing), ("other run", found.other_run)):
                for workflow_id, approval_id in pairs[:50]:
                    console.print(safe(f"  {label}: {workflow_id} {approval_id}"), soft_wrap=True, highlight=False)
            if rebuild:
                console.print("rebuilt: the projection now matches the runs that answered")
        if not found.consistent and not rebuild:
            raise typer.Exit(1)

    run(go())


@projection_app.command("check")
def projection_check(as_json: JsonFlag = False) -> None:
    """Compare the projection with the running runs' own pending items (visibility lists the runs; each is
    asked): stale rows (run closed, item decided), missing items, rows of an earlier run. Exit 1 if any."""
    _projection_run(False, as_json)


@projection_app.command("rebuild")
def projection_rebuild(as_json: JsonFlag = False) -> None:
    """Make the projection match the running runs (after a deployment that brings it to runs parked before it,
    or after runs were terminated); prints what it found before the repair."""
    _projection_run(True, as_json)
