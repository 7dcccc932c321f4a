"""The care-gap campaign's activities: evaluate a page of members with the CQL measures, start a batch of runs.

``gaps.evaluate_page`` reads the next page of Patient ids from the records store (keyset by id: the page after
the cursor, whatever the population's size), evaluates every measure for each member in memory
(:func:`tools.quality_measures.evaluate_member` over :func:`tools.measure_data.member_resources`) and returns
only the ids of the members with at least one open gap and the ids of their open measures, with counts: the
records, the populations and the evidence stay in the activity. A member whose evaluation fails is counted and
named by id and error type (never the error's text: an engine message can quote a record), and a care
coordinator gets a Task to review that member's records by hand (``run-failure-review`` in
:data:`EVALUATION_FAILED_QUEUE`, once per member and period): a member the campaign cannot evaluate is a person's
work, not a line in a log. The page goes on.

``gaps.start_runs`` starts (or joins) each such member's :class:`~workflows.care_gap.CareGapWorkflow` for the
period (:func:`workflows.care_gap_client.start_care_gap`), ``concurrency`` at once, with the deployment's
outreach guardrail policy and activity queues, initiated by ``gap-campaign``. Idempotent: a retry, or a second
campaign for the period, reports the members as ``existing``.

:func:`start_gap_campaign` starts a campaign by hand (``careloom gaps campaign start``); the schedule's are
started by :func:`feeds.schedule.create_gap_campaign_schedule`'s Temporal Schedule.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from feeds.gap_campaign import CareGapCampaignWorkflow
from feeds.gap_campaign_models import (
    EVALUATE_PAGE,
    FIRST_FAILURES,
    INITIATED_BY,
    START_RUNS,
    CampaignInput,
    EvaluatePageInput,
    EvaluatePageResult,
    MemberGaps,
    StartRunsInput,
    StartRunsResult,
)
from guardrails.configured import outreach_policy
from guardrails.policy import GuardrailPolicy
from runtime.metrics import RUNS_STARTED
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tools.measure_data import member_resources
from tools.tasks import CreateTaskArgs, CreateTaskInput, create_task
from tools.quality_measures import (
    MeasureDefinition,
    MeasurementPeriod,
    evaluate_member,
    shipped_measures,
    measurement_period,
)
from workflows.agent_run import activity_queues
from workflows.care_gap_client import start_care_gap

__all__ = ["EVALUATION_FAILED_QUEUE", "GapCampaignActivities", "campaign_workflow_id", "patient_page", "start_gap_campaign"]

PROGRAM = "care-gap-closure"
EVALUATION_FAILED_QUEUE = "care-gaps/run-review"
"""Where a member the campaign could not evaluate goes (the care-gap runs' own follow-ups go there too)."""

log = structlog.get_logger(__name__)


def patient_page(store: SqlCareRecordStore, *, after: str | None, limit: int) -> list[str]:
    """Up to ``limit`` Patient ids after ``after`` (the keyset cursor), in id order."""
    where, params = "resource_type = :t", {"t": "Patient", "limit": limit}
    if after is not None:
        where, params = f"{where} AND id > :after", {**params, "after": after}
    rows = store.db.read(lambda r: r.rows(
        f"SELECT id FROM resources WHERE {where} ORDER BY id LIMIT :limit", params))  # noqa: S608 - fixed text
    return [str(row[0]) for row in rows]


class GapCampaignActivities:
    """Bound to one records store, the measures and the task queue the care-gap runs start on."""

    def __init__(self, client: Client, settings: Settings, store: SqlCareRecordStore, task_queue: str,
                 measures: list[MeasureDefinition] | None = None) -> None:
        self._client = client
        self._settings = settings.model_copy(update={"task_queue": task_queue})
        self._store = store
        self._measures = {m.id: m for m in (measures if measures is not None else shipped_measures())}

    def _unknown(self, measure_ids: list[str]) -> str | None:
        """Why these measure ids cannot be evaluated (ids this worker does not ship), or None."""
        unknown = [m for m in measure_ids if m not in self._measures]
        if not unknown:
            return None
        return (f"no measure {', '.join(sorted(unknown))[:300]} among {', '.join(self._measures)}: start the "
                "campaign with shipped measure ids (`careloom gaps report` lists them)")

    @activity.defn(name=EVALUATE_PAGE)
    def evaluate_page(self, data: EvaluatePageInput) -> EvaluatePageResult:
        """The next page of members after the cursor, evaluated; the ids of those with an open gap, and counts.

        Measure ids this worker does not ship (a campaign started through Temporal, not by the CLI or the
        schedule, which check them) evaluate no one: the result says so (``refused``) and the campaign ends with
        it as its outcome, logged at ERROR, rather than failing with nobody told."""
        refused = self._unknown(data.measure_ids)
        if refused is not None:
            log.error("gap_campaign.refused", reason=refused)
            return EvaluatePageResult(open=[], evaluated=0, last=None, more=False, refused=refused)
        measures = [self._measures[m] for m in dict.fromkeys(data.measure_ids)] or list(self._measures.values())
        period = measurement_period(f"{data.period_start.isoformat()}/{data.period_end.isoformat()}")
        members = patient_page(self._store, after=data.after, limit=data.limit)
        found: list[MemberGaps] = []
        failures: list[str] = []
        for member_id in members:
            activity.heartbeat(member_id)
            try:
                open_ids = self._open_measures(member_id, measures, period)
            except Exception as err:  # noqa: BLE001 - one member's failure never stops the campaign
                failures.append(f"Patient/{member_id}: {type(err).__name__}")
                self._tell(member_id, data, type(err).__name__)
                continue
            if open_ids:
                found.append(MemberGaps(member_id=member_id, measure_ids=open_ids))
        log.info("gap_campaign.page", members=len(members), open=len(found), errors=len(failures))
        return EvaluatePageResult(open=found, evaluated=len(members) - len(failures), errors=len(failures),
                                  failures=failures[:FIRST_FAILURES], last=members[-1] if members else None,
                                  more=len(members) == data.limit)

    def _tell(self, member_id: str, data: EvaluatePageInput, error: str) -> None:
        """A care coordinator reviews the member's records: the campaign could not evaluate them (once per period)."""
        now = datetime.now(UTC)
        period = data.period_start.isoformat()
        create_task(self._store, CreateTaskInput(
            member_id=member_id, encounter_id=f"care-gaps-{period}", focus=f"Patient/{member_id}",
            idempotency_key=f"gap-campaign-evaluation-failed/{period}/{member_id}", authored_at=now,
            arguments=CreateTaskArgs(
                kind="run-failure-review", queue=EVALUATION_FAILED_QUEUE, priority="routine",
                description="The care-gap campaign could not evaluate this member's quality measures: review the "
                            "member's records and gaps by hand",
                reason=f"measure evaluation failed ({error}) for the period starting {period}",
                due=now + timedelta(days=7))))

    def _open_measures(self, member_id: str, measures: list[MeasureDefinition],
                       period: MeasurementPeriod) -> list[str]:
        resources = member_resources(self._store, member_id)
        return [m.id for m in measures if evaluate_member(m, resources, member_id, period).gap_open]

    @activity.defn(name=START_RUNS)
    async def start_runs(self, data: StartRunsInput) -> StartRunsResult:
        """Start (or join) each member's care-gap run for the period; counts. A retry reports ``existing``."""
        policy = await asyncio.to_thread(outreach_policy, self._settings)
        gate = asyncio.Semaphore(data.concurrency)
        outcomes = await asyncio.gather(*(self._start_one(m, data.period_start, data.period_end, policy, gate)
                                          for m in data.members))
        started = sum(1 for o in outcomes if o is True)
        existing = sum(1 for o in outcomes if o is False)
        failures = [o for o in outcomes if isinstance(o, str)]
        RUNS_STARTED.labels(PROGRAM, "campaign").inc(started)
        log.info("gap_campaign.started", started=started, existing=existing, failed=len(failures))
        return StartRunsResult(started=started, existing=existing, failed=len(failures),
                               failures=failures[:FIRST_FAILURES])

    async def _start_one(self, member: MemberGaps, period_start: date, period_end: date, policy: GuardrailPolicy,
                         gate: asyncio.Semaphore) -> bool | str:
        """True: started; False: joined an existing run; a string: the failure, naming the member."""
        settings = self._settings
        async with gate:
            try:
                _, started = await start_care_gap(
                    self._client, member_id=member.member_id, period_start=period_start, period_end=period_end,
                    measure_ids=member.measure_ids, policy=policy, task_queue=settings.task_queue,
                    salt=settings.pseudonym_salt.get_secret_value(), initiated_by=INITIATED_BY,
                    tool_attempts=settings.tool_attempts, queues=activity_queues(settings))
            except Exception as err:  # noqa: BLE001 - one refused start never stops the batch
                return f"Patient/{member.member_id}: {type(err).__name__}: {err}"[:300]
        return started

    def activities(self) -> list[object]:
        return [self.evaluate_page, self.start_runs]


def campaign_workflow_id(period_start: date, period_end: date) -> str:
    """The id of a campaign started by hand for a period (a second start while it runs joins it)."""
    return f"careloom-gap-campaign-{period_start:%Y%m%d}-{period_end:%Y%m%d}"


async def start_gap_campaign(client: Client, settings: Settings, data: CampaignInput, *,
                             task_queue: str | None = None) -> tuple[str, bool]:
    """Start a campaign for ``data``'s period (default: this calendar year, UTC) by hand: (workflow id, started).

    While a campaign for the period runs, a second start joins it (started False); after it closed, a new one
    starts (it re-evaluates everyone and starts only the members without a run for the period).
    """
    start, end = data.period_start, data.period_end
    if start is None or end is None:  # both or neither: this calendar year
        year = datetime.now(UTC).year
        start, end = date(year, 1, 1), date(year, 12, 31)
        data = data.model_copy(update={"period_start": start, "period_end": end})
    workflow_id = campaign_workflow_id(start, end)
    try:
        await client.start_workflow(CareGapCampaignWorkflow.run, data, id=workflow_id,
                                    task_queue=task_queue or settings.task_queue,
                                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL)
    except WorkflowAlreadyStartedError:
        return workflow_id, False
    return workflow_id, True
