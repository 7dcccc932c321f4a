"""One member in all three programs at once, on the real dev server: a discharge (post-discharge outreach), a
prior-authorization request and an open care gap. The outreach check-in goes out; the prior-authorization run
decides on its own; the gap reminder waits (the member was contacted today: one contact budget across programs,
read from the records store), while the gap's scheduling and PCP Tasks are written."""

from __future__ import annotations

import asyncio

from tests.pas_factory import make_pas_request
from tests.workflows.test_care_gap import _diabetic, _start, _status
from workflows.care_gap import CareGapWorkflow
from workflows.outreach_models import OutreachResult


async def test_a_member_in_three_programs_gets_one_message_today(client, task_queue, settings, store, start_run,
                                                                  submit) -> None:  # noqa: ANN001
    member = _diabetic(store)  # an inpatient stay discharged 6 hours ago, diabetes, a 2026 visit, no HbA1c
    outreach: OutreachResult = await asyncio.wait_for((await start_run(member)).result(), timeout=60)
    check_in = next(a for a in outreach.actions if a.tool == "send_outreach")
    assert ("completed", "executed") == (outreach.status, check_in.status)

    request = make_pas_request(store, member=member)  # every criterion met: approved without a human
    prior_auth = await asyncio.wait_for((await submit(request)).result(), timeout=60)
    assert "approve" == prior_auth.determination

    handle, _ = await _start(client, task_queue, settings, member.member_id)
    try:
        waiting = await _status(handle, "deferred")
        actions = {a.action_id: a for a in waiting.actions}
        assert "deferred" == actions["g1-reminder"].status
        assert "already contacted today" in (actions["g1-reminder"].reason or "")
        assert ("executed", "executed") == (actions["g2-scheduling"].status, actions["g3-pcp"].status)
        messages = [c for c in store.find_for_member("Communication", member.member_id)
                    if c["category"][0].get("text") in ("post-discharge outreach", "care-gap closure")]
        assert ["post-discharge outreach"] == [c["category"][0]["text"] for c in messages]
    finally:
        await handle.terminate("test finished")
    assert (await handle.query(CareGapWorkflow.status)).open_gaps
