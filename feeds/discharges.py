"""Discharges, and starting their outreach runs: what the ADT listener, ``careloom import --start-outreach``
and the sweep share.

A discharge is an inpatient Encounter (class IMP, ACUTE or NONAC) with a
period end, in the records store. Starting its run is idempotent by the
run's business key (:func:`workflows.outreach_client.start_outreach`): a
discharge that already has a run is reported ``existing``, never started
twice. Runs start earliest TCM deadline first; a discharge already past its
TCM window is still started and counted ``tcm_missed``, never dropped.
Callers screen discharges first (:mod:`feeds.screening`: too old, implausible,
a deceased member's earlier stays, coverage ended) and pass the held ones on,
so the report lists them beside the runs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog
from temporalio.client import Client

from guardrails.configured import outreach_policy
from guardrails.policy import GuardrailPolicy
from runtime.metrics import RUNS_STARTED, TCM_DEADLINES
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tools.deadlines import tcm_contact_due
from workflows.agent_run import activity_queues
from workflows.outreach_client import start_outreach


__all__ = ["Discharge", "Held", "HoldReason", "StartReport", "TcmState", "discharge_of", "discharges", "start_discharges", "tcm_state"]

log = structlog.get_logger(__name__)

INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC"})
AT_RISK = timedelta(hours=24)
TcmState = Literal["on_time", "at_risk", "missed"]
Trigger = Literal["adt", "import", "sweep", "cli", "api", "demo"]


@dataclass(frozen=True, order=True)
class Discharge:
    """One discharge to start outreach for; ordered by TCM deadline (earliest first)."""

    tcm_due: datetime
    member_id: str
    encounter_id: str
    discharged_at: datetime
    admitted_at: datetime | None = field(default=None, compare=False)
    """Encounter.period.start; None when absent or not a full date-time."""


HoldReason = Literal["implausible_stay", "deceased_other_stay", "too_old", "coverage_ended"]


@dataclass(frozen=True)
class Held:
    """A discharge not started, and why (``detail`` names the fix where there is one)."""

    discharge: Discharge
    reason: HoldReason
    detail: str

    @property
    def where(self) -> str:
        return f"Encounter/{self.discharge.encounter_id}"

    def as_dict(self) -> dict[str, str]:
        return {"discharge": self.where, "reason": self.reason, "detail": self.detail}


def _parse(value: str) -> datetime:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def discharge_of(encounter: dict, policy: GuardrailPolicy, time_zone: str) -> Discharge | None:
    """The discharge an Encounter records, or None (not inpatient, not ended, cancelled, no subject)."""
    if (encounter.get("class") or {}).get("code") not in INPATIENT_CLASSES:
        return None
    if encounter.get("status") in ("cancelled", "entered-in-error", "in-progress", "planned"):
        return None
    end = (encounter.get("period") or {}).get("end")
    member = ((encounter.get("subject") or {}).get("reference") or "").removeprefix("Patient/")
    if not end or not member:
        return None
    discharged = _parse(end)
    due = tcm_contact_due(discharged, time_zone, holidays=policy.holidays)
    return Discharge(tcm_due=due, member_id=member, encounter_id=encounter["id"], discharged_at=discharged,
                     admitted_at=_admitted(encounter))


def _admitted(encounter: dict) -> datetime | None:
    start = (encounter.get("period") or {}).get("start")
    try:
        return _parse(start) if start else None
    except ValueError:  # a partial dateTime ("2024-05"): the stay's length is unknown, not implausible
        return None


def discharges(store: SqlCareRecordStore, since: str, until: str, *, policy: GuardrailPolicy,
               time_zone: str) -> list[Discharge]:
    """Every inpatient discharge with a period end in [since, until), earliest TCM deadline first.

    The TCM deadline here is in the plan's time zone (the run computes the member's own when it plans).
    """
    found = [d for e in store.ended_between("Encounter", since, until)
             if (d := discharge_of(e, policy, time_zone)) is not None]
    return sorted(found)


def tcm_state(discharge: Discharge, now: datetime) -> TcmState:
    if now >= discharge.tcm_due:
        return "missed"
    return "at_risk" if discharge.tcm_due - now <= AT_RISK else "on_time"


@dataclass
class StartReport:
    """What starting a batch of discharges did, by discharge."""

    started: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    tcm: Counter[str] = field(default_factory=Counter)
    held: list[Held] = field(default_factory=list)
    """Discharges the screen held back (:mod:`feeds.screening`), each with its reason: not started."""

    @property
    def tcm_missed(self) -> int:
        return self.tcm["missed"]

    def as_dict(self) -> dict[str, object]:
        return {"started": len(self.started), "existing": len(self.existing), "failed": len(self.failed),
                "tcm_missed": self.tcm_missed, "tcm_at_risk": self.tcm["at_risk"],
                "workflow_ids": self.started, "errors": [{"discharge": d, "error": e} for d, e in self.failed],
                "held": len(self.held), "held_by_reason": dict(Counter(h.reason for h in self.held)),
                "not_started": [h.as_dict() for h in self.held]}


async def start_discharges(client: Client, settings: Settings, found: Iterable[Discharge], *, trigger: Trigger,
                           concurrency: int | None = None, initiated_by: str = "system",
                           now: datetime | None = None, policy: GuardrailPolicy | None = None,
                           held: Iterable[Held] = ()) -> StartReport:
    """Start (or find) the outreach run of each discharge, earliest TCM deadline first, ``concurrency`` at once.

    A failure to start one (the server refused it) is reported with the discharge and the others go on.
    The failure names the encounter id: it is for operators, not logs (log lines carry counts only).
    ``policy``: the guardrail policy for the runs, when the caller holds one (a long-lived listener); else it
    is built from settings (about 2.5 ms: the holiday calendar). ``held``: the discharges the caller's
    screen held back, carried into the report (and its log line, counted by reason).
    """

    policy = policy or outreach_policy(settings)
    salt = settings.pseudonym_salt.get_secret_value()
    report = StartReport(held=list(held))
    gate = asyncio.Semaphore(concurrency or settings.sweep_concurrency)
    clock = now or datetime.now(UTC)

    async def one(discharge: Discharge) -> None:
        async with gate:
            try:
                handle, started = await start_outreach(
                    client, member_id=discharge.member_id, encounter_id=discharge.encounter_id, policy=policy,
                    task_queue=settings.task_queue, initiated_by=initiated_by, salt=salt,
                    tool_attempts=settings.tool_attempts, queues=activity_queues(settings))
            except Exception as err:  # noqa: BLE001 - one refused start never stops the batch
                report.failed.append((f"Encounter/{discharge.encounter_id}", f"{type(err).__name__}: {err}"))
                return
        if started:
            state = tcm_state(discharge, clock)
            report.started.append(handle.id)
            report.tcm[state] += 1
            RUNS_STARTED.labels("post-discharge-outreach", trigger).inc()
            TCM_DEADLINES.labels(state).inc()
        else:
            report.existing.append(handle.id)

    await asyncio.gather(*(one(d) for d in sorted(found)))
    log.info("discharges.started", trigger=trigger, started=len(report.started), existing=len(report.existing),
             failed=len(report.failed), tcm_missed=report.tcm_missed, held=len(report.held),
             **{f"held_{reason}": n for reason, n in Counter(h.reason for h in report.held).items()})
    return report

