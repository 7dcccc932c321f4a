"""The discharge sweep's activities: page through discharges, start a batch, keep the watermark.

Identifiers and times only cross into workflow history (member and encounter
ids, discharge times, TCM deadlines) — never records.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client

from feeds.discharges import Discharge, discharge_of, start_discharges
from feeds.watermarks import Watermarks
from runtime.metrics import SWEEP_STARTED
from runtime.settings import Settings
from store.records import SqliteCareRecordStore

__all__ = ["DischargeRef", "FindInput", "FindResult", "StartBatchInput", "StartBatchResult", "SweepActivities",
           "WatermarkInput"]

WATERMARK = "discharge-sweep"


class DischargeRef(BaseModel):
    member_id: str
    encounter_id: str
    discharged_at: datetime
    tcm_due: datetime


class FindInput(BaseModel):
    since: datetime
    until: datetime
    after: tuple[str, str] | None = Field(default=None, description="Keyset cursor: (period.end, encounter id).")
    limit: int = Field(ge=1, le=10_000)


class FindResult(BaseModel):
    discharges: list[DischargeRef]
    scanned: int = Field(description="Encounters read (inpatient discharges or not).")
    next_after: tuple[str, str] | None = Field(description="The cursor after this page; None when it was the last.")


class StartBatchInput(BaseModel):
    discharges: list[DischargeRef]
    concurrency: int = Field(ge=1, le=500)


class StartBatchResult(BaseModel):
    started: int
    existing: int
    failed: int
    tcm_missed: int
    failures: list[str] = Field(default_factory=list, description="'Encounter/<id>: <error>' for each not started.")


class WatermarkInput(BaseModel):
    value: datetime | None = None
    default_since: datetime | None = None


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class SweepActivities:
    """Bound to one records store and the task queue the outreach runs start on."""

    def __init__(self, client: Client, settings: Settings, store: SqliteCareRecordStore, task_queue: str) -> None:
        self._client = client
        self._settings = settings.model_copy(update={"task_queue": task_queue})
        self._store = store
        self._watermarks = Watermarks(store.path)

    @activity.defn(name="feeds.find_discharges")
    def find_discharges(self, data: FindInput) -> FindResult:
        policy = self._settings.guardrail_policy()
        page = self._store.ended_page("Encounter", _iso(data.since), _iso(data.until), after=data.after,
                                      limit=data.limit)
        found: list[Discharge] = [d for e in page if (d := discharge_of(e, policy, self._settings.plan_time_zone))]
        last = page[-1] if page else None
        next_after = (last["period"]["end"], last["id"]) if last is not None and len(page) == data.limit else None
        return FindResult(
            discharges=[DischargeRef(member_id=d.member_id, encounter_id=d.encounter_id,
                                     discharged_at=d.discharged_at, tcm_due=d.tcm_due) for d in sorted(found)],
            scanned=len(page), next_after=next_after)

    @activity.defn(name="feeds.start_discharges")
    async def start_batch(self, data: StartBatchInput) -> StartBatchResult:
        found = [Discharge(tcm_due=d.tcm_due, member_id=d.member_id, encounter_id=d.encounter_id,
                           discharged_at=d.discharged_at) for d in data.discharges]
        report = await start_discharges(self._client, self._settings, found, trigger="sweep",
                                        concurrency=data.concurrency, initiated_by="discharge-sweep")
        SWEEP_STARTED.labels("started").inc(len(report.started))
        SWEEP_STARTED.labels("existing").inc(len(report.existing))
        SWEEP_STARTED.labels("failed").inc(len(report.failed))
        return StartBatchResult(started=len(report.started), existing=len(report.existing),
                                failed=len(report.failed), tcm_missed=report.tcm_missed,
                                failures=[f"{where}: {why}"[:300] for where, why in report.failed][:50])

    @activity.defn(name="feeds.read_sweep_watermark")
    def read_watermark(self, data: WatermarkInput) -> datetime:
        """The watermark, or ``default_since`` (now − lookback) before the first sweep."""
        value = self._watermarks.get(WATERMARK)
        if value is not None:
            return value
        if data.default_since is None:
            raise ValueError("no watermark yet and no default_since given")
        return data.default_since

    @activity.defn(name="feeds.advance_sweep_watermark")
    def advance_watermark(self, data: WatermarkInput) -> datetime:
        if data.value is None:
            raise ValueError("advance_watermark needs a value")
        return self._watermarks.advance(WATERMARK, data.value)

    def activities(self) -> list[object]:
        return [self.find_discharges, self.start_batch, self.read_watermark, self.advance_watermark]


