"""The benchmark's baseline: careloom's eight tool activities in a bare Temporal workflow."""

from __future__ import annotations

from datetime import time, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from agents.planner import PlannerInput, PlannerOutput
    from guardrails.facts import RunFacts
    from guardrails.policy import GuardrailPolicy
    from tools.care_plan import DraftCarePlanInput
    from tools.clinical import ClinicalContext, ClinicalContextInput
    from tools.eligibility import EligibilityInput, EligibilityResult
    from tools.member import LookupMemberInput, MemberProfile
    from tools.outreach import SendOutreachInput
    from tools.risk import RiskInput, RiskScore
    from tools.tasks import CreateTaskInput
    from tools.writes import WriteResult

if TYPE_CHECKING:  # the workflow module stays free of worker-side imports (it is loaded in the sandbox)
    from temporalio.client import Client
    from temporalio.worker import Worker

    from runtime.settings import Settings
    from store.records import CareRecordStore

__all__ = ["BareInput", "BareOutreachBaseline", "POLICY", "bare_worker"]

POLICY = GuardrailPolicy(contact_window_start=time(0), contact_window_end=time.max)
_OPTS = {"start_to_close_timeout": timedelta(seconds=60), "retry_policy": RetryPolicy(maximum_attempts=1)}


class BareInput(BaseModel):
    member_id: str
    encounter_id: str


@workflow.defn(name="BareOutreachBaseline")
class BareOutreachBaseline:
    """The same eight activity calls, in order, with no agent, guardrails or status."""

    @workflow.run
    async def run(self, data: BareInput) -> int:
        wid = workflow.info().workflow_id
        member = await workflow.execute_activity("tools.lookup_member", LookupMemberInput(member_id=data.member_id),
                                                 result_type=MemberProfile, **_OPTS)
        clinical = await workflow.execute_activity(
            "tools.get_clinical_context", ClinicalContextInput(member_id=data.member_id,
                                                               encounter_id=data.encounter_id),
            result_type=ClinicalContext, **_OPTS)
        stay = clinical.stay
        eligibility = await workflow.execute_activity(
            "tools.check_eligibility", EligibilityInput(member_id=data.member_id, on_date=stay.discharged_at.date()),
            result_type=EligibilityResult, **_OPTS)
        risk = await workflow.execute_activity(
            "tools.score_readmission_risk", RiskInput(
                length_of_stay_days=stay.length_of_stay_days, acute_admission=stay.acute_admission,
                condition_codes=clinical.condition_codes, ed_visits_6mo=clinical.ed_visits_6mo),
            result_type=RiskScore, **_OPTS)
        facts = RunFacts(member=member, clinical=clinical, eligibility=eligibility, risk=risk,
                         tcm_contact_due=stay.discharged_at)
        plan = await workflow.execute_activity("agents.plan_outreach",
                                               PlannerInput(workflow_id=wid, facts=facts, high_risk_lace=POLICY.high_risk_lace),
                                               result_type=PlannerOutput, **_OPTS)
        common = {"member_id": data.member_id, "encounter_id": data.encounter_id}
        for proposal in plan.proposals:
            key = f"{wid}/{proposal.action_id}"
            args = proposal.arguments
            if args.tool == "create_task":
                await workflow.execute_activity("tools.create_task", CreateTaskInput(
                    **common, idempotency_key=key, arguments=args, authored_at=stay.discharged_at),
                    result_type=WriteResult, **_OPTS)
            elif args.tool == "send_outreach":
                await workflow.execute_activity("tools.send_outreach", SendOutreachInput(
                    **common, idempotency_key=key, arguments=args, contact_window_start=POLICY.contact_window_start,
                    contact_window_end=POLICY.contact_window_end), result_type=WriteResult, **_OPTS)
            else:
                await workflow.execute_activity("tools.draft_care_plan", DraftCarePlanInput(
                    **common, idempotency_key=key, arguments=args, authored_at=stay.discharged_at),
                    result_type=WriteResult, **_OPTS)
        return len(plan.proposals)




def bare_worker(client: Client, settings: Settings, store: CareRecordStore, task_queue: str) -> Worker:
    """A worker for the baseline equal to careloom's: the same activities, executor size and sandbox."""
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.worker import Worker

    from agents.offline_planner import OfflinePlanner
    from agents.planner import PlannerActivity
    from guardrails.approval_check import ApprovalCheck
    from guardrails.configured import decision_signatures
    from runtime.plugin import worker_plugins
    from tools.activities import CareTools

    rules = OfflinePlanner()
    return Worker(client, task_queue=task_queue, workflows=[BareOutreachBaseline],
                  activities=[*CareTools(store, settings, ApprovalCheck(decision_signatures(settings).keys)).activities(),
                              PlannerActivity(rules, rules).plan_outreach],
                  activity_executor=ThreadPoolExecutor(max_workers=16), plugins=worker_plugins(client, settings))
