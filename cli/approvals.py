"""``careloom approvals``: list pending approvals and decide them from the command line."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.output import console, fail, print_json

app = typer.Typer(help="Pending approvals across all runs, and decisions on them.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
WorkflowArg = Annotated[str, typer.Argument(help="Workflow id (outreach-<member>-<encounter>).")]
ApprovalArg = Annotated[str, typer.Argument(help="Approval id, e.g. a3-care-plan.1")]
DigestOpt = Annotated[str, typer.Option(help="Digest of the action you reviewed (from `approvals show`).")]
AsOpt = Annotated[str, typer.Option("--as", help="Your user id.")]
RoleOpt = Annotated[str, typer.Option(help="Your role: care_coordinator, rn or md.")]


def _settings():  # noqa: ANN202 - late import keeps `--help` fast
    from cli.main import settings

    return settings()


async def _client():  # noqa: ANN202
    from runtime.temporal_client import connect

    return await connect(_settings())


@app.command("list")
def list_(
    role: Annotated[str | None, typer.Option(help="Only items this role can decide.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pending approvals across every running outreach run."""
    from workflows.outreach_client import list_pending_approvals

    async def go() -> None:
        items = await list_pending_approvals(await _client(), role=role)
        if as_json:
            print_json([i.model_dump(mode="json") for i in items])
            return
        table = Table(title=f"{len(items)} pending approval(s)")
        for column in ("workflow", "approval", "tool", "role", "confidence", "digest", "reasons"):
            table.add_column(column)
        for i in items:
            table.add_row(i.workflow_id, i.approval_id, i.tool, i.required_role, f"{i.confidence:.2f}",
                          i.digest[:12], "; ".join(i.reasons))
        console.print(table)

    _run(go())


@app.command()
def show(workflow_id: WorkflowArg, approval_id: ApprovalArg, as_json: JsonFlag = False) -> None:
    """One pending approval in full: the exact action, its digest, rationale and evidence."""
    from workflows.outreach import MemberOutreachWorkflow

    async def go() -> None:
        client = await _client()
        status = await client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id).query(
            MemberOutreachWorkflow.status)
        item = next((p for p in status.pending_approvals if p.approval_id == approval_id), None)
        if item is None:
            fail(f"no pending approval {approval_id!r} in {workflow_id}; see `careloom approvals list`")
            return
        if as_json:
            print_json(item)
            return
        console.print(f"[bold]{item.approval_id}[/] in {item.workflow_id} — {item.tool}, needs {item.required_role}")
        console.print(f"digest: {item.digest}")
        console.print(f"why a human: {'; '.join(item.reasons)}")
        console.print(f"rationale: {item.rationale}")
        console.print(f"evidence: {', '.join(item.evidence)}")
        console.print(f"confidence: {item.confidence:.2f} "
                      + ", ".join(f"{s.name}={s.value:.2f}×{s.weight:.2f}" for s in item.signals))
        console.print_json(item.arguments.model_dump_json())

    _run(go())


def _decide(workflow_id: str, approval_id: str, *, digest: str, approver: str, role: str, decision: str,
            reason: str | None = None, arguments: object = None, as_json: bool = False) -> None:
    from pydantic import ValidationError

    from agents.approvals import ApprovalDecision
    from workflows.outreach_client import DecisionRejected, decide

    try:
        payload = ApprovalDecision(approval_id=approval_id, digest=digest, decision=decision, approver=approver,
                                   role=role, reason=reason, arguments=arguments)
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"invalid decision: {'.'.join(str(p) for p in first['loc'])}: {first['msg']}", code=2)
        return

    async def go() -> None:
        try:
            result = await decide(await _client(), workflow_id, payload)
        except DecisionRejected as err:
            fail(f"refused: {err}")
            return
        if as_json:
            print_json(result)
        else:
            console.print(f"{result.decision} recorded for {result.approval_id} by {result.approver} "
                          f"({result.role}) at {result.decided_at.isoformat()}")

    _run(go())


@app.command()
def approve(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt, as_user: AsOpt,
            role: RoleOpt, as_json: JsonFlag = False) -> None:
    """Approve exactly the action you reviewed."""
    _decide(workflow_id, approval_id, digest=digest, approver=as_user, role=role, decision="approve",
            as_json=as_json)


@app.command()
def reject(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt, as_user: AsOpt, role: RoleOpt,
           reason: Annotated[str, typer.Option(help="Why (required, recorded).")], as_json: JsonFlag = False,
           ) -> None:
    """Reject an action, with a reason."""
    _decide(workflow_id, approval_id, digest=digest, approver=as_user, role=role, decision="reject",
            reason=reason, as_json=as_json)


@app.command()
def edit(workflow_id: WorkflowArg, approval_id: ApprovalArg, digest: DigestOpt, as_user: AsOpt, role: RoleOpt,
         arguments: Annotated[str, typer.Option(help="New arguments: a JSON object or @file.json.")],
         reason: Annotated[str | None, typer.Option(help="Why the edit.")] = None,
         as_json: JsonFlag = False) -> None:
    """Edit an action's arguments and approve the edited action (re-validated and re-guarded)."""
    from cli.main import parse_arguments

    _decide(workflow_id, approval_id, digest=digest, approver=as_user, role=role, decision="edit",
            reason=reason, arguments=parse_arguments(arguments), as_json=as_json)


def _run(coro: object) -> None:
    from cli.main import run

    run(coro)
