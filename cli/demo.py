"""``careloom demo`` and ``careloom up``."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from datetime import date
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from rich.progress import Progress
from rich.table import Table
from temporalio.client import Client, WorkflowExecutionStatus

from cli.output import console, plain, print_json, safe
from feeds.discharges import discharges, start_discharges
from feeds.gap_campaign import CareGapCampaignWorkflow
from feeds.gap_campaign_activities import start_gap_campaign
from feeds.gap_campaign_models import CampaignProgress, campaign_input
from runtime.errors import CareloomError, ConfigurationError
from runtime.settings import Settings
from store.importer import import_ndjson
from store.time_shift import shift_date, shift_folder
from worker import running_stack
from workflows.care_gap import CareGapWorkflow
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_models import OutreachStatus
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthStatus

__all__ = ["SAMPLE_DATA", "run_demo", "serve"]

log = structlog.get_logger(__name__)

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
SAMPLE_SNAPSHOT = date(2024, 12, 31)
"""The day the shipped sample data was taken (sample_data/README.md)."""
DEMO_USER = "careloom-demo"
DEMO_PROVIDER = "demo-provider"
"""The account the demo submits prior-authorization requests with (Claim/$submit), as a provider's system would."""
_PARKED = {"awaiting_approval", "deferred", "monitoring"}
_CLI = ".venv/bin/careloom"


async def _settled(client: Client, workflow_id: str, query: Callable[..., Any]) -> Any:
    """The run's status (any program's ``status`` query) once it is closed or parked; None while working."""
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    status = await handle.query(query)
    if description.status != WorkflowExecutionStatus.RUNNING or status.status in _PARKED:
        return status
    return None


async def _wait_for(client: Client, workflow_ids: list[str], timeout: float = 300.0, *,
                    query: Callable[..., Any] = MemberOutreachWorkflow.status,
                    label: str = "outreach runs") -> dict[str, Any]:
    done: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(label, total=len(workflow_ids))
        while len(done) < len(workflow_ids) and time.monotonic() < deadline:
            for workflow_id in workflow_ids:
                if workflow_id in done:
                    continue
                settled = await _settled(client, workflow_id, query)
                if settled is not None:
                    done[workflow_id] = settled
                    progress.advance(task)
            await asyncio.sleep(0.3)
    return done


_SHORT = {"create_task": "task", "send_outreach": "message", "draft_care_plan": "care plan"}


def _summary(statuses: Iterable[OutreachStatus], eligibility: dict[str, str]) -> Table:
    table = Table(title="Post-discharge outreach runs")
    for column in ("member", "eligibility", "LACE", "executed", "waiting for approval", "blocked / deferred",
                   "status"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        executed = [_SHORT.get(a.tool, a.tool) for a in s.actions if a.status == "executed"]
        waiting = [f"{_SHORT.get(p.tool, p.tool)} ({p.required_role})" for p in s.pending_approvals]
        held = [f"{_SHORT.get(a.tool, a.tool)} {a.status}" for a in s.actions
                if a.status in ("blocked", "deferred", "rejected", "folded")]
        table.add_row(*map(plain, (s.member_pseudonym or "?", eligibility.get(s.workflow_id, "?"),
                                   "-" if s.lace is None else str(s.lace), ", ".join(executed) or "-",
                                   ", ".join(waiting) or "-", ", ".join(held) or "-", s.status)))
    return table


def _prior_auth_summary(statuses: Iterable[PriorAuthStatus]) -> Table:
    table = Table(title="Prior-authorization requests (utilization management)")
    for column in ("member", "priority", "due (UTC)", "determination", "waiting for", "status"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        waiting = [f"{p.required_role} in {p.queue}" + (" + second reviewer" if p.dual_signoff and not p.signoffs
                                                        else "") for p in s.pending_approvals]
        issued = any(a.tool == "issue_determination" and a.status == "executed" for a in s.actions)
        table.add_row(*map(plain, (
            s.member_pseudonym or "?", s.priority, f"{s.decision_due:%Y-%m-%d %H:%M}",
            f"{s.determination} ({'issued' if issued else 'recommended'})" if s.determination else "-",
            ", ".join(waiting) or "-", s.status)))
    return table


async def _submit_prior_auth(settings: Settings, stack: Any, folder: Path) -> list[str]:
    """One triage run per sample request Bundle, submitted as a provider's system does: ``Claim/$submit`` over
    HTTP (Da Vinci PAS) to the API, as the demo's provider account (a resubmitted request joins its run)."""
    import json

    import httpx

    from api.users import UserDirectory
    from tools.pas_request import parse_pas_bundle
    from workflows.prior_auth_client import prior_auth_workflow_id

    directory = UserDirectory(settings.users_path)
    if directory.get(DEMO_PROVIDER) is None:
        directory.add_user(DEMO_PROVIDER, "care_coordinator", "Demo provider system (PAS client)")
    token = directory.rotate_token(DEMO_PROVIDER)  # used in this process only, never shown
    salt = settings.pseudonym_salt.get_secret_value()
    workflow_ids = []
    async with api_server(settings, stack.client) as api_url, httpx.AsyncClient(
            base_url=api_url, timeout=60, headers={"Authorization": f"Bearer {token}",
                                                   "Content-Type": "application/fhir+json"}) as http:
        for path in sorted(folder.glob("*.json")):
            bundle = json.loads(path.read_text(encoding="utf-8"))
            answer = await http.post("/fhir/Claim/$submit", content=json.dumps(bundle))
            if answer.status_code != 200:
                issue = (answer.json().get("issue") or [{}])[0] if answer.headers.get(
                    "content-type", "").endswith("json") else {}
                raise CareloomError(f"{path.name}: Claim/$submit answered {answer.status_code}: "
                                    f"{issue.get('diagnostics', answer.text[:200])}")
            workflow_ids.append(prior_auth_workflow_id(parse_pas_bundle(bundle), salt))
    return workflow_ids


def _eligibility(status: OutreachStatus) -> str:
    stop = next((v for v in status.verdicts if v.action_id == "run"), None)
    return "not eligible" if stop else "eligible"


async def run_demo(settings: Settings, *, data: Path, since: str, until: str, exit_after: bool,
                   as_json: bool) -> None:
    if data.resolve() == SAMPLE_DATA.resolve():
        # The shipped snapshot (taken SAMPLE_SNAPSHOT) is read with its dates moved so the snapshot is today, as a
        # payer's feed would be: coverage is checked on the discharge date and today, and old discharges are not
        # contacted. The files on disk never change.
        days = (date.today() - SAMPLE_SNAPSHOT).days
        with tempfile.TemporaryDirectory(prefix="careloom-sample-") as moved:
            if not as_json:
                console.print(f"sample data: a {SAMPLE_SNAPSHOT.isoformat()} snapshot, its dates moved {days} days "
                              "forward so it ends today")
            await _run_demo(settings, data=shift_folder(data, Path(moved), days), since=shift_date(since, days),
                            until=shift_date(until, days), exit_after=exit_after, as_json=as_json)
        return
    await _run_demo(settings, data=data, since=since, until=until, exit_after=exit_after, as_json=as_json)


async def _run_demo(settings: Settings, *, data: Path, since: str, until: str, exit_after: bool,
                    as_json: bool) -> None:
    from guardrails.configured import outreach_policy
    tokens = ensure_demo_approvers(settings)
    async with running_stack(settings) as stack:
        report = import_ndjson(stack.store, data)
        if not as_json:
            console.print(safe(f"imported {data}: {report.total('inserted')} new, {report.total('updated')} updated, "
                               f"{report.total('unchanged')} unchanged, {report.skipped} skipped"))
        found = discharges(stack.store, since, until, policy=outreach_policy(settings),
                           time_zone=settings.plan_time_zone)
        started = await start_discharges(stack.client, settings, found, trigger="demo", initiated_by=DEMO_USER)
        for where, why in started.failed:
            console.print(f"[red]could not start[/] {safe(where)}: {safe(why)}")
        workflow_ids = [*started.started, *started.existing]
        pa_ids = await _submit_prior_auth(settings, stack, data / "prior_auth") if (data / "prior_auth").is_dir() else []
        statuses = await _wait_for(stack.client, workflow_ids)
        ordered = [statuses[w] for w in workflow_ids if w in statuses]
        pa_statuses = await _wait_for(stack.client, pa_ids, query=PriorAuthWorkflow.status,
                                      label="prior-auth requests")
        pa_ordered = [pa_statuses[w] for w in pa_ids if w in pa_statuses]
        campaign = await _run_campaign(stack.client, settings)
        if as_json:
            print_json({"runs": [s.model_dump(mode="json") for s in ordered],
                        "prior_auth": [s.model_dump(mode="json") for s in pa_ordered],
                        "care_gaps": campaign.model_dump(mode="json") if campaign else None,
                        "unsettled": [w for w in [*workflow_ids, *pa_ids] if w not in {**statuses, **pa_statuses}],
                        "ui": stack.ui_url})
        else:
            console.print(_summary(ordered, {s.workflow_id: _eligibility(s) for s in ordered}))
            if pa_ordered:
                console.print(_prior_auth_summary(pa_ordered))
                waiting = next((s for s in pa_ordered if s.pending_approvals), None)
                if waiting is not None:
                    console.print(safe(f"a request's criteria, citations and clock: {_CLI} um status "
                                       f"{waiting.workflow_id}"),
                                  soft_wrap=True, highlight=False)
            if campaign is not None:
                console.print(safe(
                    f"care-gap campaign {campaign.period_start} to {campaign.period_end}: {campaign.evaluated} "
                    f"member(s) evaluated against the CQL measures, {campaign.open} with an open gap: "
                    f"{campaign.started} run(s) started, {campaign.existing} already running, {campaign.errors} "
                    f"evaluation error(s) (`{_CLI} gaps report --period {campaign.period_start:%Y}`)"),
                    soft_wrap=True, highlight=False)
            _print_next_steps(ordered, stack.ui_url, exit_after)
        if not as_json and tokens:
            console.print("\nDemo approvers (tokens shown once; `careloom users rotate NAME` makes new ones):")
            for user_id, token in tokens.items():
                console.print(safe(f"  {user_id}: {token}"), soft_wrap=True, highlight=False)
        if not exit_after:
            async with api_server(settings, stack.client) as api_url:
                await _until_signalled(f"demo serving: inbox {api_url}/inbox; worker and server stay up; "
                                       "Ctrl-C to stop")


async def _run_campaign(client: Client, settings: Settings) -> CampaignProgress | None:
    """A small care-gap campaign over the imported members for this calendar year; None (said) if it did not
    finish within two minutes."""
    workflow_id, _ = await start_gap_campaign(client, settings, campaign_input(settings))
    handle = client.get_workflow_handle_for(CareGapCampaignWorkflow.run, workflow_id)
    try:
        progress = await asyncio.wait_for(handle.result(), timeout=120)
    except TimeoutError:
        console.print(f"[yellow]the care-gap campaign {safe(workflow_id)} is still running[/]: "
                      f"`{_CLI} gaps campaign status {safe(workflow_id)}`")
        return None
    # The runs it started settle (worked and monitoring, or deferred to contact hours) before the demo goes on.
    query = "WorkflowType = 'CareGapWorkflow' AND ExecutionStatus = 'Running'"
    runs: list[str] = []
    for _ in range(50):
        runs = [w.id async for w in client.list_workflows(query)]
        if len(runs) >= progress.started:
            break
        await asyncio.sleep(0.2)
    await _wait_for(client, runs, query=CareGapWorkflow.status, label="care-gap runs")
    return progress


def _print_next_steps(statuses: list[OutreachStatus], ui_url: str | None, exit_after: bool) -> None:
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    console.print("runs by status: " + safe(", ".join(f"{k}={v}" for k, v in sorted(counts.items()))))
    console.print(safe(planner_line(statuses)))
    pending = next((p for s in statuses for p in s.pending_approvals), None)
    if pending is not None:
        where = ("in another terminal (the demo keeps serving)" if not exit_after
                 else f"after starting the server and worker again with `{_CLI} up` in another terminal")
        console.print(safe(f"\nApprove one {where}:"))
        for line in (
            f"{_CLI} approvals list",
            f"{_CLI} approvals show {pending.workflow_id} {pending.approval_id}",
            f"{_CLI} approvals approve {pending.workflow_id} {pending.approval_id} --digest {pending.digest} "
            f"--as {_approver_for(pending.required_role)}",
            f"{_CLI} outreach status {pending.workflow_id}",
        ):
            console.print("  " + safe(line), soft_wrap=True, highlight=False)
    if ui_url:
        console.print(safe(f"\nTemporal Web UI: {ui_url}  (while the server runs)"))


def planner_line(statuses: list[OutreachStatus]) -> str:
    """Which planner planned, and what the model cost when one did."""
    planners = sorted({s.planner for s in statuses if s.planner})
    usages = [s.planner_usage for s in statuses if s.planner_usage is not None]
    if not usages:
        return f"planner: {', '.join(planners) or '-'} (set CARELOOM_MODEL to plan with a language model)"
    tokens = sum(u.total_tokens for u in usages)
    return (f"planner: {', '.join(planners)}; {sum(u.requests for u in usages)} model requests, "
            f"{tokens / len(usages):,.0f} tokens per planned run, estimated ${sum(u.estimated_cost_usd for u in usages):.4f}"
            + (f", {sum(u.repaired for u in usages)} repaired" if any(u.repaired for u in usages) else ""))


def _approver_for(role: str) -> str:
    return next(user for user, user_role, _ in DEMO_APPROVERS if user_role == role)


async def _until_signalled(message: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    console.print(safe(message))
    await stop.wait()


@asynccontextmanager
async def api_server(settings: Settings, client: Client) -> AsyncIterator[str]:
    """The HTTP API and web inbox on settings.api_host:api_port, for as long as the context lasts."""
    import uvicorn

    from api.app import create_app

    config = uvicorn.Config(create_app(settings, client=client), host=settings.api_host, port=settings.api_port,
                            log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign] # careloom owns the signals
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise ConfigurationError(f"the API could not start on {settings.api_host}:{settings.api_port}; "
                                     "set CARELOOM_API_PORT to a free port")
        await asyncio.sleep(0.05)
    try:
        yield f"http://{settings.api_host}:{settings.api_port}"
    finally:
        server.should_exit = True
        await task


async def serve(settings: Settings) -> None:
    async with running_stack(settings) as stack, api_server(settings, stack.client) as api_url:
        where = stack.server.address if stack.server else settings.target_host
        await _until_signalled(f"careloom up: Temporal at {where}, worker on task queue {settings.task_queue}, "
                               f"inbox {api_url}/inbox, API {api_url}/docs"
                               + (f", Temporal Web UI {stack.ui_url}" if stack.ui_url else "") + "; Ctrl-C to stop")


async def serve_api(settings: Settings) -> None:
    from runtime.temporal_client import connect

    client = await connect(settings)
    async with api_server(settings, client) as api_url:
        await _until_signalled(f"careloom api: inbox {api_url}/inbox, API {api_url}/docs; Ctrl-C to stop")


DEMO_APPROVERS = (("dr.rivera", "md", "Dr. Ana Rivera"), ("rn.kim", "rn", "Jae Kim, RN"),
                  ("cc.jones", "care_coordinator", "Sam Jones"))


def ensure_demo_approvers(settings: Settings) -> dict[str, str]:
    """Create the demo's approvers if missing; returns the tokens of the ones created now (shown once)."""
    from api.users import UserDirectory

    directory = UserDirectory(settings.users_path)
    created = {}
    for user_id, role, name in DEMO_APPROVERS:
        if directory.get(user_id) is None:
            created[user_id] = directory.add_user(user_id, role, name)  # type: ignore[arg-type]
    return created
