"""``careloom history``: export, replay, audit and what-if over workflow histories."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from cli.common import run, settings
from cli.output import console, err_console, fail, print_json, safe

app = typer.Typer(help="Export, replay and audit workflow histories; test a guardrail policy on past cases.",
                  no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def decoded_runs(files: list[Path]) -> list:
    """Decoded runs of exported files (decrypted with the configured keys); unreadable files are reported and skipped."""
    from history.events import read_run
    from history.files import HistoryFileError, load_history
    from runtime.codec import PayloadKeyError
    from runtime.data_converter import codec_for

    codec = codec_for(settings())
    records = []
    for path in files:
        try:
            records.append(read_run(load_history(path).history, codec))
        except (HistoryFileError, ValueError, PayloadKeyError) as err:
            err_console.print(f"[yellow]skipped {safe(err)}[/]", soft_wrap=True)
    return records


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="Folder for <workflow id>.json files.")],
    workflow_id: Annotated[list[str] | None, typer.Option("--workflow-id", "-w", help="A workflow id (repeatable).")] = None,
    query: Annotated[str | None, typer.Option(help='Visibility query, e.g. \'CloseTime > "2026-11-20T00:00:00Z"\'.')] = None,
) -> None:
    """Export histories (the JSON `temporal workflow show --output json` writes) by id or by query."""
    from temporalio.service import RPCError

    from history.files import careloom_query, write_history
    from runtime.temporal_client import connect

    if not workflow_id and not query:
        fail("say what to export: --workflow-id ID (repeatable) or --query QUERY", code=2)

    async def go() -> int:
        client = await connect(settings())
        ids = list(workflow_id or [])
        if query:
            ids += [e.id async for e in client.list_workflows(careloom_query(query))]
        failures = 0
        with Progress(console=err_console) as progress:
            task = progress.add_task("exporting", total=len(ids))
            for wid in ids:
                try:
                    write_history(out, await client.get_workflow_handle(wid).fetch_history())
                except RPCError as err:
                    failures += 1
                    err_console.print(f"[red]{safe(wid)}: cannot export ({safe(err.message)}); check the id[/]")
                progress.advance(task)
        console.print(safe(f"exported {len(ids) - failures} of {len(ids)} histories to {out}"))
        return failures

    if run(go()):
        raise typer.Exit(1)


@app.command()
def replay(
    paths: Annotated[list[Path] | None, typer.Argument(help="Exported files or folders.")] = None,
    query: Annotated[str | None, typer.Option(help="Replay live runs selected by a visibility query instead.")] = None,
    processes: Annotated[int, typer.Option(help="Parallel replay processes.")] = 2,
    sandbox: Annotated[bool, typer.Option(help="Replay inside the workflow sandbox (slower).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Replay histories against the current code: ok / nondeterministic / error each; exit 1 on any failure."""
    from history.files import HistoryFileError, careloom_query, history_files
    from history.replay import ReplayOutcome, replay_files, replay_histories

    started = time.perf_counter()
    if query:
        from runtime.temporal_client import connect

        async def live() -> list[ReplayOutcome]:
            client = await connect(settings())
            pairs = []
            async for e in client.list_workflows(careloom_query(query)):
                pairs.append((e.id, await client.get_workflow_handle(e.id, run_id=e.run_id).fetch_history()))
            return await replay_histories(pairs, sandbox=sandbox)

        outcomes = run(live())
    else:
        try:
            files = history_files(paths or [])
        except HistoryFileError as err:
            fail(str(err), code=2)
            return
        outcomes = replay_files(files, processes=processes, sandbox=sandbox)
    elapsed = time.perf_counter() - started
    bad = [o for o in outcomes if o.status != "ok"]
    if as_json:
        print_json([o.model_dump() for o in outcomes])
    else:
        for o in outcomes:
            colour = {"ok": "green", "nondeterministic": "red", "error": "yellow"}[o.status]
            line = f"[{colour}]{o.status:<16}[/] {safe(o.source or o.workflow_id)}"
            if o.status != "ok":
                line += safe(f"\n    {o.detail}" + (f"\n    first diverging event: {o.first_diverging_event}"
                                                     if o.first_diverging_event else "") + (f"\n    hint: {o.hint}"
                                                                                            if o.hint else ""))
            console.print(line, soft_wrap=True, highlight=False)
        console.print(f"{len(outcomes)} replayed: {len(outcomes) - len(bad)} ok, "
                      f"{sum(o.status == 'nondeterministic' for o in bad)} nondeterministic, "
                      f"{sum(o.status == 'error' for o in bad)} error in {elapsed:.1f} s "
                      f"({len(outcomes) / elapsed:.0f}/s)")
    if bad:
        raise typer.Exit(1)


@app.command()
def audit(
    target: Annotated[str, typer.Argument(help="A workflow id (fetched live) or an exported history file.")],
    ledger: Annotated[bool, typer.Option(help="Cross-check with the decision ledger in the records database.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """A readable timeline of one run from its history: tools, proposals, verdicts, approvals, outcome."""
    from store.connect import configured_database
    from history.audit import audit as build
    from history.events import read_run
    from history.files import HistoryFileError, load_history
    from store.ledger import DecisionLedger

    cfg = settings()
    path = Path(target)
    if path.suffix == ".json" or path.exists():
        try:
            history = load_history(path).history
        except HistoryFileError as err:
            fail(str(err), code=2)
            return
    else:
        from temporalio.service import RPCError

        from runtime.temporal_client import connect

        async def fetch():  # noqa: ANN202
            return await (await connect(cfg)).get_workflow_handle(target).fetch_history()

        try:
            history = run(fetch())
        except RPCError as err:
            fail(f"no run {target!r} ({err.message}); pass a workflow id or an exported .json file", code=2)
            return
    from runtime.codec import PayloadKeyError
    from runtime.data_converter import codec_for

    try:
        record = read_run(history, codec_for(cfg))
    except PayloadKeyError as err:
        fail(f"{target}: {err}", code=2)
        return
    location = cfg.database_location
    has_ledger = ledger and (not isinstance(location, Path) or location.exists())
    report = build(record, DecisionLedger(configured_database(cfg)) if has_ledger else None)
    if as_json:
        print_json(report)
    else:
        console.print(f"[bold]{safe(report.workflow_id)}[/]  policy {safe(report.policy_id)}  outcome "
                      f"{safe(report.outcome)}")
        for e in report.entries:
            when = e.at.strftime("%Y-%m-%d %H:%M:%S") if e.at else "-"
            console.print(safe(f"{when}  {e.kind:<9} {e.summary}"), soft_wrap=True, highlight=False)
        if report.ledger_checked:
            if report.ledger_mismatches:
                for m in report.ledger_mismatches:
                    console.print(f"[red]ledger mismatch: {safe(m)}[/]", soft_wrap=True)
            else:
                console.print("decision ledger: consistent with the history")
    if report.ledger_mismatches:
        raise typer.Exit(1)


@app.command("what-if")
def what_if(
    policy: Annotated[Path, typer.Option(help="The program's policy JSON (GuardrailPolicy, PriorAuthPolicy).")],
    paths: Annotated[list[Path], typer.Argument(help="Exported history files or folders.")],
    program: Annotated[str, typer.Option(help="The program the policy is for (`careloom programs list`); "
                                         "other programs' runs are skipped.")] = "post-discharge-outreach",
    as_json: JsonFlag = False,
) -> None:
    """Re-evaluate recorded proposals under another policy (no side effects, no model calls)."""
    from history.files import HistoryFileError, history_files
    from history.what_if import load_policy
    from history.what_if import what_if as evaluate
    from workflows.programs import PROGRAMS

    chosen = next((p for p in PROGRAMS if p.name == program), None)
    if chosen is None:
        fail(f"unknown program {program!r}; known: {', '.join(p.name for p in PROGRAMS)}", code=2)
        return
    try:
        candidate = load_policy(policy, chosen)
        files = history_files(paths)
    except HistoryFileError as err:
        fail(str(err), code=2)
        return
    report = evaluate(decoded_runs(files), candidate, chosen)
    if as_json:
        print_json(report)
        return
    for c in report.changes:
        flag = "  [bold red]!! WOULD RUN WITHOUT A HUMAN[/]" if c.loses_human else ""
        console.print(safe(f"{c.workflow_id} {c.action_id} ({c.tool}): {c.old}{f'/{c.old_role}' if c.old_role else ''}"
                           f" -> {c.new}{f'/{c.new_role}' if c.new_role else ''}") + flag, soft_wrap=True,
                      highlight=False)
    if report.other_programs_skipped:
        console.print(safe(f"{report.other_programs_skipped} run(s) of other programs skipped (the policy is for "
                           f"{report.program})"))
    console.print(f"{report.cases} cases, {report.actions} actions: approvals +{report.approvals_added} "
                  f"-{report.approvals_removed}; automation {report.automation_before:.0%} -> "
                  f"{report.automation_after:.0%}; runs stopped {report.runs_stopped_before} -> "
                  f"{report.runs_stopped_after}")
    if report.human_removed:
        console.print(f"[bold red]WARNING: {len(report.human_removed)} action(s) that needed a human under the "
                      f"old policy would run without one under {safe(report.new_policy)}[/]", soft_wrap=True)


@app.command()
def usage(
    paths: Annotated[list[Path], typer.Argument(help="Exported history files or folders.")],
    as_json: JsonFlag = False,
) -> None:
    """Model requests, tokens and estimated cost of planning, per planner, model and prompt version."""
    from history.files import HistoryFileError, history_files
    from history.usage import usage_report

    try:
        files = history_files(paths)
    except HistoryFileError as err:
        fail(str(err), code=2)
        return
    report = usage_report(decoded_runs(files))
    if as_json:
        print_json({**report.model_dump(), "estimated_cost_usd": report.estimated_cost_usd,
                    "lines": [{**line.model_dump(), "tokens_per_run": round(line.tokens_per_run, 1)}
                              for line in report.lines]})
        return
    for line in report.lines:
        console.print(safe(f"{line.planner}  model={line.model or '-'}  prompt={line.prompt_version or '-'}: "
                           f"{line.runs} run(s), {line.requests} request(s), {line.prompt_tokens}+"
                           f"{line.completion_tokens} tokens ({line.tokens_per_run:,.0f}/run), "
                           f"~${line.estimated_cost_usd:.4f}, {line.repaired} repaired"), soft_wrap=True, highlight=False)
    console.print(f"{report.runs} run(s); {report.failed_planning_attempts} failed planning attempt(s); "
                  f"{report.fallbacks} fallback plan(s) for review; estimated ${report.estimated_cost_usd:.4f}")
