"""feeds.screening on a real records store: which discharges outreach can still help (no server needed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feeds.discharges import discharge_of
from feeds.screening import ScreenRules, screen
from guardrails.configured import outreach_policy
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tests.databases import fresh_store
from tests.fhir_factory import make_member

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlCareRecordStore]:
    with fresh_store(tmp_path, "r.db") as records:
        yield records


def _discharges(store, *encounter_ids):
    policy = outreach_policy(SETTINGS)
    return [discharge_of(store.get("Encounter", e), policy, SETTINGS.plan_time_zone) for e in encounter_ids]


def _screen(store, found, *, include_old=False, settings=SETTINGS):
    return screen(store, found, ScreenRules.from_settings(settings, include_old=include_old), now=NOW)


def test_a_discharge_older_than_the_lookback_is_held_unless_old_ones_are_included(store):
    """Default lookback = the sweep's 30 days: a 2023 discharge is held as too_old, naming its age and the
    flag; --include-old starts it; a discharge within the lookback starts."""
    old = make_member(store, discharged_at=datetime(2023, 5, 1, 12, tzinfo=UTC))
    recent = make_member(store, discharged_at=NOW - timedelta(days=29))
    found = _discharges(store, old.encounter_id, recent.encounter_id)
    held = _screen(store, found)
    included = _screen(store, found, include_old=True)

    assert [recent.encounter_id] == [d.encounter_id for d in held.start]
    [why] = held.held
    assert ("too_old", f"Encounter/{old.encounter_id}") == (why.reason, why.where)
    assert why.detail.startswith("discharged 1,036 days ago, before the 30-day lookback")
    assert "--include-old" in why.detail
    assert ([], 2) == (included.held, len(included.start))


def test_the_lookback_is_configurable(store):
    """CARELOOM_OUTREACH_LOOKBACK_DAYS=7 holds a 10-day-old discharge the default 30 days would start."""
    member = make_member(store, discharged_at=NOW - timedelta(days=10))
    found = _discharges(store, member.encounter_id)

    assert ["too_old"] == [h.reason for h in _screen(
        store, found, settings=Settings(_env_file=None, outreach_lookback_days=7)).held]
    assert [] == _screen(store, found).held


def test_implausible_stays_are_held_even_with_old_ones_included(store):
    """A 7,241-day stay and a stay that ends before it starts are data errors: held, never started."""
    long_stay = make_member(store, discharged_at=NOW - timedelta(days=2))
    backwards = make_member(store, discharged_at=NOW - timedelta(days=2))
    for member, start in ((long_stay, NOW - timedelta(days=7243)), (backwards, NOW)):
        encounter = store.get("Encounter", member.encounter_id)
        encounter["period"]["start"] = start.isoformat()
        store.put_many([encounter])
    out = _screen(store, _discharges(store, long_stay.encounter_id, backwards.encounter_id), include_old=True)

    assert ([], ["implausible_stay", "implausible_stay"]) == (out.start, [h.reason for h in out.held])
    details = {h.discharge.encounter_id: h.detail for h in out.held}
    assert details[long_stay.encounter_id].startswith("a 7,241-day stay is longer than the 365 days")
    assert "before it starts" in details[backwards.encounter_id]


def test_a_deceased_members_stays_start_one_run_for_the_latest(store):
    """Four stays of a deceased member: only the latest starts (one close-episode item); the three earlier
    are held naming it, in any batch and order."""
    member = make_member(store, deceased=True, earlier_stays=3, discharged_at=NOW - timedelta(days=1))
    earlier = [f"{member.encounter_id}-prior{n}" for n in range(3)]
    out = _screen(store, _discharges(store, *earlier, member.encounter_id))
    alone = _screen(store, _discharges(store, earlier[0]))

    assert [member.encounter_id] == [d.encounter_id for d in out.start]
    assert ["deceased_other_stay"] * 3 == [h.reason for h in out.held]
    assert all(f"latest stay (Encounter/{member.encounter_id})" in h.detail for h in out.held)
    assert ([], ["deceased_other_stay"]) == (alone.start, [h.reason for h in alone.held])


def test_coverage_ended_since_the_discharge_is_held_with_the_reason(store):
    """Covered on the discharge date, ended since: held as coverage_ended, naming the end and both dates.
    A member not covered on the discharge date either is left to the run (which stops as ineligible)."""
    ended = make_member(store, discharged_at=datetime(2024, 6, 1, tzinfo=UTC), coverage_end="2024-12-31")
    never = make_member(store, discharged_at=datetime(2024, 6, 1, tzinfo=UTC), coverage_end="2020-12-31")
    out = _screen(store, _discharges(store, ended.encounter_id, never.encounter_id), include_old=True)

    assert [never.encounter_id] == [d.encounter_id for d in out.start]
    [why] = out.held
    assert ("coverage_ended", ended.encounter_id) == (why.reason, why.discharge.encounter_id)
    assert "ended 2024-12-31: in force on 2024-06-01 but not on 2026-03-02" in why.detail
