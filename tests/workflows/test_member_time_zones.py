"""A Synthea-style Bundle folder on the real dev server: each member is contacted by their own clock, records say
when careloom wrote them, and reviewers see the age the member had at discharge.

Synthea writes ``"state": "California"``; before issue 21 only USPS codes were known, so every such member was
called on Eastern time (a Los Angeles member at 05:00 local with the default window).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from guardrails.policy import GuardrailPolicy
from store.importer import import_bundles
from tests.bundle_factory import synthea_bundle
from tests.conftest import ALWAYS_ASK, OPEN_WINDOW, StartRun, wait_for_status
from tests.fhir_factory import Member

ZONES = ("America/Los_Angeles", "America/Chicago", "America/New_York")


def _import_folder(store, folder: Path, people: dict[str, dict], **bundle_options) -> dict[str, Member]:
    """One transaction Bundle per person, the Patient changed as given (address, telecom, birthDate); imported."""
    folder.mkdir(parents=True)
    members = {}
    for name, patient_changes in people.items():
        bundle, patient_id, encounter_id = synthea_bundle(**bundle_options)
        patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        patient.update(patient_changes)
        (folder / f"{name}.json").write_text(json.dumps(bundle), encoding="utf-8")
        members[name] = Member(member_id=patient_id, encounter_id=encounter_id)
    report = import_bundles(store, folder)
    assert (0, []) == (report.skipped, report.problems)
    return members


def _window_closed_everywhere() -> tuple[GuardrailPolicy, int]:
    """A one-hour contact window (member-local) closed now in every continental zone, and not opening within the
    next hour in any: each member's deferral then ends at the window's start on their own clock."""
    now = datetime.now(UTC)
    busy = {(now.astimezone(ZoneInfo(z)) + timedelta(hours=k)).hour for z in ZONES for k in (0, 1)}
    hour = next(h for h in range(24) if h not in busy)
    return OPEN_WINDOW.model_copy(update={"contact_window_start": time(hour),
                                          "contact_window_end": time(hour, 59, 59)}), hour


def _address(**fields) -> list[dict]:
    return [{"use": "home", "line": ["1 Main St"], **fields}]


async def test_full_state_names_defer_each_member_by_their_own_zone(start_run: StartRun, store, tmp_path) -> None:
    """"California" (SMS) and "New York" (phone) members, a ZIP-only Chicago member, and one whose state is
    unrecognised: outside the window each contact waits until the window opens on that member's clock; only the
    unrecognised one uses the plan's zone, and its deferral says so. The TCM Task is authored when written."""
    members = _import_folder(store, tmp_path / "synthea", {
        "los-angeles": {"address": _address(city="Los Angeles", state="California", postalCode="90012")},
        "new-york": {"address": _address(city="Albany", state="New York"),
                     "telecom": [{"system": "phone", "value": "(518) 555-0100", "use": "home"}]},
        "chicago-zip-only": {"address": _address(city="Chicago", postalCode="60601")},
        "unrecognised": {"address": _address(city="Cair Paravel", state="Narnia")},
    })
    policy, hour = _window_closed_everywhere()
    started = datetime.now(UTC)
    handles = {name: await start_run(member, policy=policy) for name, member in members.items()}

    # The New York member has only a landline, so theirs is a phone call (the planner's one channel for them).
    expected = {"los-angeles": "America/Los_Angeles", "new-york": "America/New_York",
                "chicago-zip-only": "America/Chicago", "unrecognised": "America/New_York"}
    for name, handle in handles.items():
        status = await wait_for_status(handle, lambda s: {a.action_id: a.status for a in s.actions} == {
            "a1-tcm-task": "executed", "a2-check-in": "deferred", "a3-care-plan": "executed"})
        zone = expected[name]
        deferral = next(v for v in status.verdicts if v.action_id == "a2-check-in" and v.decision == "defer")
        opening = deferral.defer_until.astimezone(ZoneInfo(zone))

        assert time(hour) == opening.time(), name
        assert f"{policy.contact_window_label} {zone}" in deferral.reasons[0], name
        plan_zone_named = "plan zone America/New_York: the address state is not a recognised US state" in (
            deferral.reasons[0])
        assert (name == "unrecognised") == plan_zone_named, name
        assert [] == store.find_for_member("Communication", members[name].member_id)

        task = store.get(*next(a for a in status.actions if a.action_id == "a1-tcm-task").reference.split("/"))
        assert started <= datetime.fromisoformat(task["authoredOn"]) <= datetime.now(UTC), name


def _born_years_before(day: date, years: int) -> date:
    """The birth date of someone whose ``years``-th birthday is ``day``."""
    return day.replace(year=day.year - years)


async def test_reviewers_see_the_age_at_discharge(start_run: StartRun, store, tmp_path) -> None:
    """Discharged 10 days ago, 80 since 7 days ago: the approval item says 79, the age on the discharge day."""
    discharged = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    born = _born_years_before(discharged.astimezone(ZoneInfo("America/New_York")).date() + timedelta(days=3), 80)
    members = _import_folder(store, tmp_path / "synthea", {"aged": {"birthDate": born.isoformat()}},
                             discharged_at=discharged)
    handle = await start_run(members["aged"], policy=ALWAYS_ASK)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) == 3)

    assert {79} == {p.context.age_years for p in status.pending_approvals}
