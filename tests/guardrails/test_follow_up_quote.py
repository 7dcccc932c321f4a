"""careloom's own follow-up Task quotes a failure without adverse words, and the worker still writes it.

Review of issue 21: the worker skipped the ``reason`` of every ``run-failure-review`` Task (careloom's follow-up
quotes errors such as "an action that denies a service needs an MD"), so a forged run could write adverse text
there with no MD. The worker now reads that field like any other; careloom quotes the failure through
:func:`guardrails.adverse_content.non_adverse_quote`, so its own follow-up is never refused. On the real dev
server: a withdrawal whose free-text reason is adverse still gives a care manager a Task, whose reason keeps the
rest of the words and leaves the adverse ones out.
"""

from __future__ import annotations

from guardrails.adverse_content import classify_text
from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.fhir_factory import make_member
from workflows.agent_run import WithdrawRequest, WithdrawResult
from workflows.outreach import MemberOutreachWorkflow

ADVERSE_REASON = "Deny continued home health services; terminate authorization effective today."


async def test_a_follow_up_whose_cause_reads_adverse_is_written_without_those_words(
        start_run: StartRun, store, settings) -> None:  # noqa: ANN001
    member = make_member(store)
    handle = await start_run(member, policy=ALWAYS_ASK)
    await wait_for_status(handle, lambda s: s.status == "awaiting_approval")
    result = await handle.execute_update(MemberOutreachWorkflow.withdraw, WithdrawRequest(
        actor="adt:GENHOSP", reason=ADVERSE_REASON, source="GENHOSP"), result_type=WithdrawResult)
    await handle.result()

    assert result.closed
    [task] = store.find_for_member("Task", member.member_id)
    reason = task["reasonCode"]["text"]
    assert "run-failure-review" == task["code"]["text"]
    assert reason.startswith("withdrawn by adt:GENHOSP [left out: it reads as an adverse decision")
    assert reason.endswith("closed unexecuted: confirm with the source")  # the rest, word for word
    assert [] == classify_text(reason)  # before: the adverse words verbatim in careloom's own Task
    # The ledger's entry keeps the words (the note says where they are).
    entries = DecisionLedger(configured_database(settings)).entries(handle.id)
    assert any(e.event == "run_failed" and ADVERSE_REASON in (e.reason or "") for e in entries), entries
