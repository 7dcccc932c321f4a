"""``careloom programs``: the programs declared on careloom's runtime."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.output import console, plain, print_json, safe

app = typer.Typer(help="The care-management programs careloom runs.", no_args_is_help=True)


def program_rows() -> list[dict[str, object]]:
    """One row per program: what starts it, its workflow, tools, planners, policy and queues."""
    from cli.common import settings
    from workflows.programs import PROGRAMS

    cfg = settings()
    rows = []
    for program in PROGRAMS:
        policy = program.configured_policy(cfg)
        rows.append({
            "name": program.name, "title": program.title, "trigger": program.trigger,
            "workflow_type": program.workflow_type, "workflow_ids": f"{program.id_prefix}…",
            "tools": [t.name for t in program.tools], "planners": list(program.planners),
            "policy": policy.policy_id, "queues": list(policy.approvals.queues),
        })
    return rows


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False) -> None:
    """Every program: its workflow, tools, planners, guardrail policy and approval queues."""
    rows = program_rows()
    if as_json:
        print_json(rows)
        return
    table = Table(title="careloom programs", show_lines=True)
    for column in ("program", "workflow", "tools", "planners", "policy / queues"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(f"[bold]{safe(row['name'])}[/]\n" + safe(f"{row['title']}\ntrigger: {row['trigger']}"),
                      *map(plain, (f"{row['workflow_type']}\n{row['workflow_ids']}", "\n".join(row["tools"]),
                                   "\n".join(row["planners"]), f"{row['policy']}\n" + ", ".join(row["queues"]))))
    console.print(table)
