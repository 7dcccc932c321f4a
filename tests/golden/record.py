#!/usr/bin/env python3
"""Re-record the golden histories in tests/golden/histories/ (when behaviour changes on purpose).

    .venv/bin/python tests/golden/record.py [SCENARIO ...]

Runs each scenario (all, or the ones named) on a fresh embedded dev server with
a real worker, then exports the closed run's history, replacing that scenario's
file only. The model-* scenarios plan on the scripted model server
(tests/model_server.py). Commit the new files together with the change that
needed them (see docs/runbook.md, "Golden histories").
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import tempfile
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agents.model_planner import ModelConfig, OpenAIPlanner  # noqa: E402
from guardrails.approvals import ApprovalDecision  # noqa: E402
from guardrails.policy import ApprovalRouting, GuardrailPolicy, QueueRule, SlaRule  # noqa: E402
from guardrails.prior_auth_policy import PriorAuthPolicy  # noqa: E402
from history.files import write_history  # noqa: E402
from runtime.logging import configure_logging  # noqa: E402
from runtime.settings import Settings  # noqa: E402
from runtime.temporal_client import connect  # noqa: E402
from runtime.temporal_server import EmbeddedTemporalServer  # noqa: E402
from store.connect import configured_database
from store.sql_records import SqlCareRecordStore  # noqa: E402
from tests.deciding import TEST_SIGNING_KEYS, decide  # noqa: E402
from tests.fhir_factory import HIGH_RISK, make_member  # noqa: E402
from tests.model_server import error, running_model_server  # noqa: E402
from tests.net import free_port  # noqa: E402
from tests.pas_factory import MRI_NOTES_AGAINST, MRI_NOTES_MISSING_THERAPY, make_pas_request  # noqa: E402
from tools.care_plan import DraftCarePlanArgs, GoalSpec  # noqa: E402
from tools.criteria import criteria_for
from tools.determination import IssueDeterminationArgs, ItemDecision  # noqa: E402
from worker import build_worker  # noqa: E402
from workflows.agent_run import AgentRun  # noqa: E402
from workflows.outreach_client import start_outreach  # noqa: E402
from store.submissions import SubmissionStore  # noqa: E402
from tests.dtr_answers import completed_response  # noqa: E402
from tools.appeals import AppealRequest, check_appeal  # noqa: E402
from tools.pas_models import PendAnswer  # noqa: E402
from workflows.agent_run import WithdrawRequest  # noqa: E402
from tests.workflows.test_care_gap import _diabetic, _hba1c  # noqa: E402
from tests.workflows.test_care_gap import _start as _start_gap  # noqa: E402
from tests.workflows.test_care_gap import _status as _gap_status  # noqa: E402
from workflows.care_gap import CareGapWorkflow  # noqa: E402
from workflows.prior_auth import PriorAuthWorkflow  # noqa: E402
from workflows.prior_auth_client import start_appeal, submit_prior_auth  # noqa: E402

OUT = Path(__file__).resolve().parent / "histories"
OPEN = GuardrailPolicy(contact_window_start=time(0), contact_window_end=time.max)
FAST = ApprovalRouting(queues={
    "care-coordination": QueueRule(role="care_coordinator", sla=SlaRule(clock="calendar", duration=timedelta(seconds=2))),
    "clinical-review": QueueRule(role="rn", sla=SlaRule(clock="calendar", duration=timedelta(seconds=2))),
    "medical-review": QueueRule(role="md", sla=SlaRule(clock="calendar", duration=timedelta(seconds=2))),
})


def _window_opening_soon() -> GuardrailPolicy:
    local = datetime.now(UTC).astimezone(ZoneInfo("America/New_York"))
    start = (local + timedelta(seconds=4)).time().replace(microsecond=0)
    return OPEN.model_copy(update={"contact_window_start": start, "contact_window_end": time.max})


async def _pending(handle, wait: float | None = None):  # noqa: ANN001, ANN202
    """The run's first pending approval; None after ``wait`` seconds without one (an error without ``wait``)."""
    for _ in range(int((wait or 20.0) * 10)):
        pending = await handle.query(AgentRun.approvals)
        if pending:
            return pending[0]
        await asyncio.sleep(0.1)
    if wait is not None:
        return None
    raise RuntimeError(f"{handle.id} never asked for approval")


async def main(wanted: set[str]) -> None:
    configure_logging("WARNING", "json")
    state = Path(tempfile.mkdtemp(prefix="careloom-golden-"))
    settings = Settings(state_dir=state, embedded_port=free_port(), embedded_ui_port=free_port(), embedded_ui=False,
                        tool_attempts=1, signing_keys=TEST_SIGNING_KEYS, _env_file=None)
    store = SqlCareRecordStore(configured_database(settings))
    OUT.mkdir(parents=True, exist_ok=True)
    with running_model_server() as model:
        await _record(settings, store, model, wanted)


async def _decide_all(client, handle, decision) -> None:  # noqa: ANN001
    """Decide every item the run asks about, one after another."""
    item = await _pending(handle)
    while item is not None:
        await decide(client, handle.id, decision(item))
        item = await _pending(handle, wait=2.0)


async def _save(handle, name: str) -> None:  # noqa: ANN001
    await handle.result()
    history = dataclasses.replace(await handle.fetch_history(), workflow_id=name)  # file name = scenario
    print("recorded", write_history(OUT, history))


_PEOPLE = {"care_coordinator": "cc.jones", "rn": "rn.kim", "md": "dr.rivera"}


def _as_required(i, decision: str = "approve", **extra):  # noqa: ANN001, ANN202
    # The second sign-off of a dual item needs someone other than the MD who signed first.
    approver = "rn.kim" if i.signoffs else _PEOPLE[i.required_role]
    return ApprovalDecision(approval_id=i.approval_id, digest=i.digest, decision=decision, approver=approver,
                            role="rn" if i.signoffs else i.required_role, **extra)


def _overturn(i):  # noqa: ANN001, ANN202
    if i.signoffs:
        return _as_required(i)
    approve = IssueDeterminationArgs(
        outcome="approve", explanation="Overturned on physician review.",
        items=[ItemDecision(sequence=x.sequence, code=x.code, decision="approved", approved_quantity=1)
               for x in i.arguments.items])
    return _as_required(i, "edit", arguments=approve)


async def _record_prior_auth(client, settings: Settings, store: SqlCareRecordStore, queue: str,  # noqa: ANN001
                             wanted: set[str]) -> None:
    quick = {name: QueueRule(role=rule.role, sla=SlaRule(clock="calendar", duration=timedelta(seconds=2)),
                             escalate_to=rule.escalate_to) for name, rule in PriorAuthPolicy().approvals.queues.items()}
    fast = PriorAuthPolicy(approvals=PriorAuthPolicy().approvals.model_copy(update={"queues": quick}))
    scenarios = [
        ("um-auto-approved", {}, PriorAuthPolicy(), None),
        ("um-pended", {"notes": MRI_NOTES_MISSING_THERAPY}, PriorAuthPolicy(), _as_required),
        ("um-denial-md-approved", {"notes": MRI_NOTES_AGAINST}, PriorAuthPolicy(), _as_required),
        ("um-md-overturned", {"notes": MRI_NOTES_AGAINST}, PriorAuthPolicy(), _overturn),
        ("um-expired", {"notes": MRI_NOTES_AGAINST, "priority": "stat"}, fast, None),
    ]
    for name, options, policy, decision in scenarios:
        if wanted and name not in wanted:
            continue
        request = make_pas_request(store, **options)
        handle, _, _ = await submit_prior_auth(
            client, store, request.bundle, criteria=criteria_for(settings), policy=policy, task_queue=queue,
            salt=settings.pseudonym_salt.get_secret_value(), initiated_by="golden-recorder", tool_attempts=1)
        if decision is not None:
            await _decide_all(client, handle, decision)
        if name == "um-pended":  # a pend now waits for the provider's answer: the recording ends it by a withdrawal
            await handle.execute_update("withdraw", WithdrawRequest(actor="golden-provider", reason="recorded"))
        await _save(handle, name)
    if not wanted or "um-pend-answered" in wanted:
        await _record_pend_answered(client, settings, store, queue)
    if not wanted or "um-appeal-overturned" in wanted:
        await _record_appeal_overturned(client, settings, store, queue)


async def _record_pend_answered(client, settings: Settings, store: SqlCareRecordStore, queue: str) -> None:  # noqa: ANN001
    """Pended by an MD, answered by the provider's attestation, then approved without a human."""
    request = make_pas_request(store, notes=MRI_NOTES_MISSING_THERAPY)
    handle, _, _ = await submit_prior_auth(
        client, store, request.bundle, criteria=criteria_for(settings), policy=PriorAuthPolicy(), task_queue=queue,
        salt=settings.pseudonym_salt.get_secret_value(), initiated_by="golden-recorder", tool_attempts=1)
    await _decide_all(client, handle, _as_required)
    response = completed_response(request.claim_id, request.member_id, {"conservative-therapy-6-weeks": True},
                                  response_id="golden-answer")
    stored, _ = store.create_once([response], f"golden/{request.claim_id}")
    await handle.execute_update(PriorAuthWorkflow.answer_pend, PendAnswer(
        questionnaire_response=stored[0]["id"], submitted_by="golden-provider", received_at=datetime.now(UTC)))
    await _save(handle, "um-pend-answered")


async def _record_appeal_overturned(client, settings: Settings, store: SqlCareRecordStore,  # noqa: ANN001
                                   queue: str) -> None:
    """A denial (dr.rivera, rn.kim) appealed with the physician's attestation; md.lee overturns it."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    handle, _, _ = await submit_prior_auth(
        client, store, request.bundle, criteria=criteria_for(settings), policy=PriorAuthPolicy(), task_queue=queue,
        salt=settings.pseudonym_salt.get_secret_value(), initiated_by="golden-provider", tool_attempts=1)
    cited: list[str] = []

    def deny(item):  # noqa: ANN001, ANN202
        cited.extend(item.arguments.criteria_cited)
        return _as_required(item)

    await _decide_all(client, handle, deny)
    denied = await handle.result()
    evidence = completed_response(request.claim_id, request.member_id, dict.fromkeys(cited, True),
                                  response_id="golden-appeal-evidence")
    case = check_appeal(store, denied.claim_response.removeprefix("ClaimResponse/"), AppealRequest(response=evidence),
                        caller="golden-provider", role="care_coordinator", submitter=True,
                        criteria=criteria_for(settings), today=datetime.now(UTC).date())
    record = SubmissionStore(store.db).latest(request.claim_id)
    appeal = await start_appeal(client, store, case, record, filed_by="golden-provider", expedited=False,
                                policy=PriorAuthPolicy(), task_queue=queue, response=evidence, tool_attempts=1)
    await _decide_all(client, appeal, lambda i: ApprovalDecision(
        approval_id=i.approval_id, digest=i.digest, decision="approve", approver="md.lee", role="md"))
    await _save(appeal, "um-appeal-overturned")


async def _record_care_gaps(client, settings: Settings, store: SqlCareRecordStore, queue: str,  # noqa: ANN001
                            wanted: set[str]) -> None:
    """A gap worked and closed by new data (a recheck after an HbA1c arrives); a member with no open gap."""
    if not wanted or "gap-closed" in wanted:
        member = _diabetic(store)
        handle, _ = await _start_gap(client, queue, settings, member.member_id)
        await _gap_status(handle, "monitoring")
        store.put_many([_hba1c(member.member_id, 7.1)])
        await handle.signal(CareGapWorkflow.recheck)
        await _save(handle, "gap-closed")
    if not wanted or "gap-no-open-gap" in wanted:
        member = _diabetic(store)
        store.put_many([_hba1c(member.member_id, 6.4)])
        handle, _ = await _start_gap(client, queue, settings, member.member_id)
        await _save(handle, "gap-no-open-gap")


async def _record(settings: Settings, store: SqlCareRecordStore, model, wanted: set[str]) -> None:  # noqa: ANN001
    async with EmbeddedTemporalServer(settings) as server:
        # Named by address, not embedded: the golden histories are recorded unencrypted, to replay without keys.
        client = await connect(settings.model_copy(update={"temporal_address": server.address}))
        queue = f"golden-{uuid.uuid4().hex[:6]}"
        planner = OpenAIPlanner(ModelConfig(model="scripted-model", base_url=model.url, api_key="sk-golden"))
        async with build_worker(client, settings, store, task_queue=queue), \
                build_worker(client, settings, store, task_queue=f"{queue}-model", planner=planner):
            async def run(name: str, member, policy: GuardrailPolicy = OPEN, decision=None,  # noqa: ANN001, ANN202
                          on: str = queue):
                if wanted and name not in wanted:
                    return
                handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                                 policy=policy, task_queue=on, tool_attempts=1,
                                                 initiated_by="golden-recorder",
                                                 salt=settings.pseudonym_salt.get_secret_value())
                if decision is not None:
                    await _decide_all(client, handle, decision)
                await _save(handle, name)

            await run("auto-completed", make_member(store))
            await run("approved", make_member(store, **HIGH_RISK), decision=lambda i: ApprovalDecision(
                approval_id=i.approval_id, digest=i.digest, decision="approve", approver="rn.kim", role="rn"))
            await run("edited", make_member(store, **HIGH_RISK), decision=lambda i: ApprovalDecision(
                approval_id=i.approval_id, digest=i.digest, decision="edit", approver="rn.kim", role="rn",
                arguments=DraftCarePlanArgs(title="Edited plan", goals=[GoalSpec(description="Visit in 5 days",
                                                                                 due_in_days=5)])))
            await run("rejected", make_member(store, **HIGH_RISK), decision=lambda i: ApprovalDecision(
                approval_id=i.approval_id, digest=i.digest, decision="reject", approver="rn.kim", role="rn",
                reason="active plan exists"))
            await run("escalated", make_member(store, **HIGH_RISK), policy=OPEN.model_copy(update={"approvals": FAST}))
            await run("deferred", make_member(store), policy=_window_opening_soon())
            await run("ineligible", make_member(store, coverage_end="2001-12-31"))
            await run("blocked", make_member(store, opted_out=True))
            await run("model-planned", make_member(store), on=f"{queue}-model")
            if not wanted or "model-fallback" in wanted:
                model.script(error(401, "invalid api key"))
            await run("model-fallback", make_member(store), on=f"{queue}-model", decision=lambda i: ApprovalDecision(
                approval_id=i.approval_id, digest=i.digest, decision="approve", approver=_PEOPLE[i.required_role],
                role=i.required_role))
            await _record_prior_auth(client, settings, store, queue, wanted)
            await _record_care_gaps(client, settings, store, queue, wanted)


if __name__ == "__main__":
    asyncio.run(main(set(sys.argv[1:])))
