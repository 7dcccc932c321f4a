"""A folded message and the plan's zone, on the real dev server, worker and store (issue 21 review).

* Folded: a second run's check-in on a day the member was already contacted writes nothing; before, the run
  reported it ``executed`` (with the other run's Communication) and sampled it as an automatic execution, so
  the run report and the ledger said this run's message went out.
* Zone: a worker whose plan is not on Eastern time; an address-less member. Before, the guardrail (plan zone)
  saw an open window and the tool (New York) refused, so the run deferred a minute, again and again.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from temporalio.service import RPCError

from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.conftest import OPEN_WINDOW, StartRun, wait_for_status
from tests.fhir_factory import Member, make_member
from tests.workflows.test_quality_sampling import sampling
from worker import build_worker
from workflows.outreach_client import start_outreach


def _second_stay(store, member: Member) -> Member:
    encounter = copy.deepcopy(store.get("Encounter", member.encounter_id))
    encounter["id"] = f"{member.encounter_id}-b"
    store.put_many([encounter])
    return Member(member_id=member.member_id, encounter_id=encounter["id"])


async def test_a_second_runs_message_on_the_same_day_is_reported_folded_not_executed(
        start_run: StartRun, store, settings) -> None:
    """Run 1 sends the check-in; run 2 (the member's other stay, same day) ends its check-in ``folded`` with the
    reason naming run 1's Communication, the run still completes, one SMS exists, and only run 1's message is
    sampled as an automatic execution (quality rate 1.0)."""
    member = make_member(store)
    other = _second_stay(store, member)
    first = await (await start_run(member, policy=sampling(1.0))).result()
    handle = await start_run(other, policy=sampling(1.0))
    second = await handle.result()

    sent = next(a for a in first.actions if a.tool == "send_outreach")
    folded = next(a for a in second.actions if a.tool == "send_outreach")
    communications = store.find_for_member("Communication", member.member_id)
    assert ("executed", "completed", "folded", "completed") == (sent.status, first.status, folded.status,
                                                                second.status)
    assert (1, f"Communication/{communications[0]['id']}") == (len(communications), sent.reference)
    assert f"one contact a day: the member was contacted today by {sent.reference}" in (folded.reason or "")
    sampled = [e.approval_id for e in DecisionLedger(configured_database(settings)).entries(handle.id)
               if e.event == "sampled"]
    assert folded.action_id not in sampled and sampled, sampled  # its other automatic actions still are
    queried = await wait_for_status(handle, lambda s: s.status == "completed")
    assert "folded" == next(a.status for a in queried.actions if a.tool == "send_outreach")


def _open_there_closed_in_new_york() -> tuple[str, time, time]:
    """A plan zone and a member-local window open now in that zone and closed now in New York."""
    now = datetime.now(UTC)
    zone = "Asia/Tokyo"  # 13 or 14 hours from New York: never the same hour
    hour = now.astimezone(ZoneInfo(zone)).hour
    new_york = now.astimezone(ZoneInfo("America/New_York")).hour
    end = min(hour + 2, 23)
    assert not hour <= new_york <= end
    return zone, time(hour), time(end, 59, 59)


async def test_an_address_less_member_is_messaged_on_the_plans_clock(client, settings, store) -> None:
    """With the plan on Tokyo time and a window open there now (closed in New York), the guardrail allows the
    check-in and the tool sends it at once (before: the tool refused on New York time, the run deferred)."""
    zone, start, end = _open_there_closed_in_new_york()
    member = make_member(store, state=None)
    policy = OPEN_WINDOW.model_copy(update={"contact_window_start": start, "contact_window_end": end})
    queue = f"test-{uuid.uuid4().hex[:12]}"
    async with build_worker(client, settings.model_copy(update={"plan_time_zone": zone}), store, task_queue=queue):
        handle, _ = await start_outreach(
            client, member_id=member.member_id, encounter_id=member.encounter_id, policy=policy, task_queue=queue,
            initiated_by="care-ops-bot", tool_attempts=1, salt=settings.pseudonym_salt.get_secret_value())
        try:
            status = await wait_for_status(handle, lambda s: any(
                a.tool == "send_outreach" and a.status in ("executed", "deferred") for a in s.actions))
        finally:
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")

    check_in = next(a for a in status.actions if a.tool == "send_outreach")
    assert ("executed", 1) == (check_in.status,
                               len(store.find_for_member("Communication", member.member_id))), check_in.reason
