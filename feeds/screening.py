"""Which discharges outreach can still help: screened before their runs start.

``import --start-outreach``, the ADT listener and the sweep start a run per
discharge. A real export holds discharges no outreach can help, and each run
would contact the member (or open an item for a person). :func:`screen` holds
these back, each with its reason, and lets the rest start:

* ``implausible_stay``: the stay ends before it starts, or lasts longer than
  ``max_stay_days`` (a 7,241-day "stay" is a data error, not a discharge).
* ``deceased_other_stay``: the member is recorded as deceased. Every run of
  a deceased member opens the same item (close the care episode) for a
  person, so only the member's latest plausible discharge in the store
  starts; the others are listed.
* ``too_old``: discharged before the lookback (``outreach_lookback_days``,
  default the sweep's ``sweep_lookback_days``): "checking in after your
  recent hospital stay" years later helps nobody. Started only when asked
  for explicitly (``--include-old``).
* ``coverage_ended``: covered on the discharge date but not today (checked
  with :func:`tools.eligibility.check_eligibility` on both dates). A member
  not covered on the discharge date either is left to the run, which stops
  itself as ``ineligible`` with the reason, as before.

Held discharges are reported, never dropped silently: callers list them
(the CLI), answer them in the ACK (ADT) or count them (the sweep).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio.exceptions import ApplicationError

from feeds.discharges import Discharge, Held, discharge_of
from guardrails.configured import outreach_policy
from guardrails.policy import GuardrailPolicy
from runtime.settings import Settings
from store.records import CareRecordStore
from tools.eligibility import EligibilityInput, check_eligibility
from tools.member import is_deceased

__all__ = ["ScreenRules", "Screening", "screen"]

@dataclass(frozen=True)
class ScreenRules:
    """The screen's settings: ``lookback`` None starts discharges of any age (``--include-old``)."""

    lookback: timedelta | None
    max_stay: timedelta
    policy: GuardrailPolicy
    time_zone: str

    @classmethod
    def from_settings(cls, settings: Settings, *, include_old: bool = False,
                      policy: GuardrailPolicy | None = None) -> ScreenRules:
        days = settings.outreach_lookback_days or settings.sweep_lookback_days
        return cls(lookback=None if include_old else timedelta(days=days),
                   max_stay=timedelta(days=settings.max_stay_days),
                   policy=policy or outreach_policy(settings), time_zone=settings.plan_time_zone)


@dataclass
class Screening:
    """The discharges to start, and those held with their reasons."""

    start: list[Discharge] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(h.reason for h in self.held)


def _implausible(discharge: Discharge, rules: ScreenRules) -> str | None:
    if discharge.admitted_at is None:
        return None
    length = discharge.discharged_at - discharge.admitted_at
    if length < timedelta(0):
        return (f"the stay ends ({discharge.discharged_at.isoformat()}) before it starts "
                f"({discharge.admitted_at.isoformat()}); fix Encounter.period")
    if length > rules.max_stay:
        return (f"a {length.days:,}-day stay is longer than the {rules.max_stay.days} days a stay may last "
                "(CARELOOM_MAX_STAY_DAYS); check Encounter.period.start and .end")
    return None


def _latest_plausible(store: CareRecordStore, member_id: str, rules: ScreenRules) -> Discharge | None:
    """The member's latest plausible discharge in the store (any import, any batch)."""
    found = []
    for encounter in store.find_for_member("Encounter", member_id):
        try:
            discharge = discharge_of(encounter, rules.policy, rules.time_zone)
        except ValueError:  # a partial period.end: no discharge time
            continue
        if discharge is not None and _implausible(discharge, rules) is None:
            found.append(discharge)
    return max(found, key=lambda d: (d.discharged_at, d.encounter_id), default=None)


def _coverage_ended(store: CareRecordStore, discharge: Discharge, now: datetime) -> str | None:
    """Why coverage in force on the discharge date has ended since, or None (in force, or never was)."""
    on = discharge.discharged_at.date()
    try:
        both = check_eligibility(store, EligibilityInput(member_id=discharge.member_id, on_date=on,
                                                         also_on=now.date()))
        if both.inforce:
            return None
        then = check_eligibility(store, EligibilityInput(member_id=discharge.member_id, on_date=on))
    except ApplicationError:  # e.g. no such member: the run reports it and gives a person the follow-up
        return None
    return f"{both.reason}; outreach cannot help a member no longer covered" if then.inforce else None


def screen(store: CareRecordStore, found: list[Discharge], rules: ScreenRules, *, now: datetime) -> Screening:
    """Split ``found`` into discharges to start and discharges held back (see the module docstring)."""
    out = Screening()
    latest: dict[str, Discharge | None] = {}
    for discharge in sorted(found):
        if (why := _implausible(discharge, rules)) is not None:
            out.held.append(Held(discharge, "implausible_stay", why))
            continue
        patient = store.get("Patient", discharge.member_id)
        if patient is not None and is_deceased(patient):
            if discharge.member_id not in latest:
                latest[discharge.member_id] = _latest_plausible(store, discharge.member_id, rules)
            last = latest[discharge.member_id]
            if last is not None and last.encounter_id != discharge.encounter_id:
                out.held.append(Held(discharge, "deceased_other_stay", (
                    f"the member is recorded as deceased: one run, for the latest stay (Encounter/"
                    f"{last.encounter_id}), closes the care episode; this earlier stay starts none")))
                continue
        if rules.lookback is not None and discharge.discharged_at < now - rules.lookback:
            age = (now - discharge.discharged_at).days
            out.held.append(Held(discharge, "too_old", (
                f"discharged {age:,} days ago, before the {rules.lookback.days}-day lookback "
                "(CARELOOM_OUTREACH_LOOKBACK_DAYS); if outreach can still help, start it explicitly (`careloom "
                "import --start-outreach --include-old` or `careloom outreach start`)")))
            continue
        if (why := _coverage_ended(store, discharge, now)) is not None:
            out.held.append(Held(discharge, "coverage_ended", why))
            continue
        out.start.append(discharge)
    return out
