"""One contact per member per day in post-discharge outreach, on the real dev server, worker and store."""

from __future__ import annotations

import asyncio
import copy

from store.sql_records import SqlCareRecordStore
from tests.conftest import StartRun
from tests.fhir_factory import Member, make_member


def _second_stay_ending_the_same_day(store: SqlCareRecordStore, member: Member) -> Member:
    """Another inpatient Encounter of the same member, ending when the first does (two stays, one day)."""
    encounter = copy.deepcopy(store.get("Encounter", member.encounter_id))
    encounter["id"] = f"{member.encounter_id}-b"
    store.put_many([encounter])
    return Member(member_id=member.member_id, encounter_id=encounter["id"])


async def test_two_runs_for_one_member_on_one_day_send_one_sms(start_run: StartRun, store) -> None:
    """Two stays of one member ending the same day start two runs at once; the member gets one SMS that day:
    both runs complete, the second's check-in folds into the first's Communication and says so (before: two
    identical SMS milliseconds apart)."""
    member = make_member(store)
    other = _second_stay_ending_the_same_day(store, member)
    handles = await asyncio.gather(start_run(member), start_run(other))
    results = await asyncio.gather(*(h.result() for h in handles))

    check_ins = [next(a for a in r.actions if a.tool == "send_outreach") for r in results]
    communications = store.find_for_member("Communication", member.member_id)
    assert ["completed", "completed"] == [r.status for r in results]
    assert ["executed", "folded"] == sorted(a.status for a in check_ins)  # whichever ran second folded
    assert 1 == len(communications)
    assert {f"Communication/{communications[0]['id']}"} == {a.reference for a in check_ins}
    assert "in-progress" == communications[0]["status"]
