"""The discharge sweep's activities: page through discharges, start a batch, keep the watermark.

Only identifiers and counts cross into workflow history (member and encounter
ids, the keyset cursor, totals): the start activity reads each encounter again
from the store rather than carrying its dates through history. Failure strings
name the encounter id and the server's error, nothing from the record.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime


from temporalio import activity
from temporalio.client import Client

from feeds.discharges import Discharge, discharge_of, start_discharges
from feeds.screening import ScreenRules, screen
from feeds.sweep_models import (
    ADVANCE_WATERMARK,
    FIND_DISCHARGES,
    READ_WATERMARK,
    START_DISCHARGES,
    DischargeRef,
    FindInput,
    FindResult,
    StartBatchInput,
    StartBatchResult,
    WatermarkInput,
)
from feeds.watermarks import Watermarks
from guardrails.configured import outreach_policy
from runtime.metrics import SWEEP_STARTED
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore

__all__ = ["SweepActivities"]

WATERMARK = "discharge-sweep"


def _iso(when: datetime) -> str:
    """UTC ISO text, as the store's period ends compare (a naive time is taken as UTC)."""
    aware = when if when.tzinfo else when.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")


class SweepActivities:
    """Bound to one records store and the task queue the outreach runs start on."""

    def __init__(self, client: Client, settings: Settings, store: SqlCareRecordStore, task_queue: str) -> None:
        self._client = client
        self._settings = settings.model_copy(update={"task_queue": task_queue})
        self._store = store
        self._watermarks = Watermarks(store.db)

    @activity.defn(name=FIND_DISCHARGES)
    def find_discharges(self, data: FindInput) -> FindResult:
        """One page of encounters ending in [since, until) after the cursor; their discharges as ids."""
        policy = outreach_policy(self._settings)
        page = self._store.ended_page("Encounter", _iso(data.since), _iso(data.until), after=data.after,
                                      limit=data.limit)
        found = sorted(d for e in page if (d := discharge_of(e, policy, self._settings.plan_time_zone)))
        last = (page[-1]["period"]["end"], page[-1]["id"]) if page else None
        return FindResult(discharges=[DischargeRef(member_id=d.member_id, encounter_id=d.encounter_id)
                                      for d in found],
                          scanned=len(page), last=last, more=len(page) == data.limit)

    @activity.defn(name=START_DISCHARGES)
    async def start_batch(self, data: StartBatchInput) -> StartBatchResult:
        """Start (or find) each discharge's outreach run; counts. Idempotent: a retry reports ``existing``."""
        found = await asyncio.to_thread(self._discharges_of, data.discharges)
        # The sweep's window is its lookback (a backfill's explicit window is the operator's choice): age is
        # not screened here, the rest is.
        rules = ScreenRules.from_settings(self._settings, include_old=True)
        screened = await asyncio.to_thread(screen, self._store, found, rules, now=datetime.now(UTC))
        skipped = len(data.discharges) - len(screened.start)
        report = await start_discharges(self._client, self._settings, screened.start, trigger="sweep",
                                        concurrency=data.concurrency, initiated_by="discharge-sweep",
                                        policy=rules.policy, held=screened.held)
        SWEEP_STARTED.labels("started").inc(len(report.started))
        SWEEP_STARTED.labels("existing").inc(len(report.existing))
        SWEEP_STARTED.labels("skipped").inc(skipped)
        SWEEP_STARTED.labels("failed").inc(len(report.failed))
        return StartBatchResult(started=len(report.started), existing=len(report.existing),
                                failed=len(report.failed), skipped=skipped, tcm_missed=report.tcm_missed,
                                failures=[f"{where}: {why}"[:300] for where, why in report.failed][:50],
                                held=[f"{h.where} ({h.reason})" for h in report.held][:50])

    def _discharges_of(self, refs: list[DischargeRef]) -> list[Discharge]:
        """The refs' discharges read again from the store; one no longer a discharge is left out (skipped)."""
        policy = outreach_policy(self._settings)
        found = []
        for ref in refs:
            encounter = self._store.get("Encounter", ref.encounter_id)
            discharge = discharge_of(encounter, policy, self._settings.plan_time_zone) if encounter else None
            if discharge is not None and discharge.member_id == ref.member_id:
                found.append(discharge)
        return found

    @activity.defn(name=READ_WATERMARK)
    def read_watermark(self, data: WatermarkInput) -> datetime | None:
        """The stored watermark: where the last complete sweep ended; None before the first one."""
        return self._watermarks.get(WATERMARK)

    @activity.defn(name=ADVANCE_WATERMARK)
    def advance_watermark(self, data: WatermarkInput) -> datetime:
        if data.value is None:
            raise ValueError("advance_watermark needs a value")
        return self._watermarks.advance(WATERMARK, data.value)

    def activities(self) -> list[object]:
        return [self.find_discharges, self.start_batch, self.read_watermark, self.advance_watermark]


