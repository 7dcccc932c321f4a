"""``careloom quality``: the retrospective review queue of automatically executed actions.

A share of the actions careloom executes with no human approval
(``CARELOOM_QUALITY_SAMPLE_RATE``) is sampled into the decision ledger; a
reviewer judges each one afterwards, and the findings feed ``careloom monitor
report`` (audited automation precision). Nothing here blocks or undoes an
action.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from cli.common import settings
from cli.output import console, fail, plain, print_json, safe

app = typer.Typer(help="Review a sample of automatically executed actions after the fact (quality audit).",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _ledger():  # noqa: ANN202
    from store.connect import configured_database
    from store.ledger import DecisionLedger

    return DecisionLedger(configured_database(settings()))


@app.command("list")
def list_(as_json: JsonFlag = False) -> None:
    """Sampled automatic executions not yet reviewed, oldest first."""
    from evaluation.quality import pending_samples

    samples = pending_samples(_ledger().entries())
    if as_json:
        print_json([s.model_dump(mode="json") for s in samples])
        return
    table = Table(title=f"{len(samples)} sampled action(s) awaiting quality review")
    for column in ("sampled", "workflow", "action", "tool", "digest"):
        table.add_column(column, overflow="fold")
    for s in samples:
        table.add_row(*map(plain, (s.sampled_at.strftime("%Y-%m-%d %H:%M:%SZ"), s.workflow_id, s.action_id,
                                   s.tool or "-", s.digest[:12])))
    console.print(table)


@app.command()
def review(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id of the run (from `careloom quality list`).")],
    action_id: Annotated[str, typer.Argument(help="The sampled action's id, e.g. a1-tcm-task.")],
    finding: Annotated[str, typer.Option(help="appropriate or inappropriate.")],
    reviewer: Annotated[str | None, typer.Option(help="Your user id (local users file).")] = None,
    token: Annotated[str | None, typer.Option(help="Your API token or IdP bearer token (instead of --reviewer).")]
    = None,
    note: Annotated[str | None, typer.Option(help="What you found (recorded in the ledger; no PHI).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Record your finding on one sampled action (once; the ledger is append-only)."""
    from api.auth import acting_identity
    from api.identity import AuthError
    from evaluation.quality import FINDINGS, QualityReviewError, review_entry

    if finding not in FINDINGS:  # before anything else: the cheapest mistake to fix
        fail(f"unknown finding {finding!r}; use --finding appropriate or --finding inappropriate", code=2)
    cfg = settings()
    try:
        who = acting_identity(cfg, as_user=reviewer, token=token)
    except AuthError as err:
        fail(str(err).replace("--as USER", "--reviewer USER"), code=2)
        return
    ledger = _ledger()
    try:
        entry = review_entry(ledger.entries(workflow_id), workflow_id=workflow_id, action_id=action_id,
                             finding=finding, note=note, reviewer=who.user_id, role=who.role, now=datetime.now(UTC))
    except QualityReviewError as err:
        fail(str(err))
        return
    if not ledger.append([entry]):
        fail(f"action {action_id} of {workflow_id} was reviewed by someone else just now; see `careloom ledger "
             f"show --workflow {workflow_id}`")
    if as_json:
        print_json(entry)
    else:
        console.print(safe(f"recorded: {action_id} of {workflow_id} judged {finding} by {who.user_id} ({who.role})"),
                      soft_wrap=True, highlight=False)
