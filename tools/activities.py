"""Every care tool as a Temporal activity, with frozen names.

:class:`CareTools` binds the tools to a records store and settings (never
passed through activity inputs, which history records). Activities are
synchronous: the worker runs them in a thread pool, and SQLite calls block.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from runtime.settings import Settings
from store.fhir_validation import InvalidResource
from store.records import CareRecordStore
from tools import care_plan, clinical, eligibility, member, outreach, risk, tasks
from tools.errors import INVALID_RESOURCE, tool_error
from tools.writes import ApprovedWrite, ServiceEffect, WriteGate, WriteResult

__all__ = ["CareTools"]

log = structlog.get_logger(__name__)


def _bind() -> structlog.typing.FilteringBoundLogger:
    info = activity.info()
    return log.bind(workflow_id=info.workflow_id, run_id=info.workflow_run_id,
                    activity=info.activity_type, attempt=info.attempt)


class CareTools:
    """The read and write tools, bound to one store."""

    def __init__(self, store: CareRecordStore, settings: Settings, gate: WriteGate, *,
                 scorer: risk.RiskModelScorer | None = None) -> None:
        self._store = store
        self._scorer = scorer  # the learned risk model (the worker builds it from the registry), or LACE alone
        self._salt = settings.pseudonym_salt.get_secret_value()
        self._plan_zone = settings.plan_time_zone  # a member's zone only when their address gives none
        self._gate = gate  # verifies each write's approval before it writes (guardrails.approval_check)

    def activities(self) -> list[object]:
        return [
            self.lookup_member,
            self.check_eligibility,
            self.get_clinical_context,
            self.score_readmission_risk,
            self.draft_care_plan,
            self.create_task,
            self.send_outreach,
        ]

    # --- read tools -------------------------------------------------------
    @activity.defn(name="tools.lookup_member")
    def lookup_member(self, data: member.LookupMemberInput) -> member.MemberProfile:
        result = member.lookup_member(self._store, data, salt=self._salt, today=datetime.now(UTC).date(),
                                     default_zone=self._plan_zone)
        _bind().info("tool.lookup_member", pseudonym=result.pseudonym, channels=len(result.channels))
        return result

    @activity.defn(name="tools.check_eligibility")
    def check_eligibility(self, data: eligibility.EligibilityInput) -> eligibility.EligibilityResult:
        result = eligibility.check_eligibility(self._store, data)
        _bind().info("tool.check_eligibility", outcome=result.outcome, inforce=result.inforce)
        return result

    @activity.defn(name="tools.get_clinical_context")
    def get_clinical_context(self, data: clinical.ClinicalContextInput) -> clinical.ClinicalContext:
        result = clinical.get_clinical_context(self._store, data)
        _bind().info("tool.get_clinical_context", conditions=len(result.condition_codes),
                     ed_visits=result.ed_visits_6mo)
        return result

    @activity.defn(name="tools.score_readmission_risk")
    def score_readmission_risk(self, data: risk.RiskInput) -> risk.RiskScore:
        result = risk.score_readmission_risk(data)
        if self._scorer is None:
            outcome = risk.ModelOutcome(model_reason="no learned risk model on this worker: LACE alone")
        elif not (data.member_id and data.encounter_id):
            outcome = risk.ModelOutcome(model_reason="the run passed no member and stay to read the model's "
                                                     "features from: LACE alone")
        else:
            try:
                outcome = self._scorer.score(self._store, data.member_id, data.encounter_id)
            except Exception as err:  # noqa: BLE001 - a scorer must never fail the run: LACE stands
                outcome = risk.ModelOutcome(model_reason=f"the learned model failed ({err.__class__.__name__}): "
                                                         "LACE alone")
        result = result.model_copy(update={"model": outcome.model, "shadow": outcome.shadow,
                                           "model_reason": outcome.model_reason,
                                           "shadow_reason": outcome.shadow_reason})
        if data.member_id and data.encounter_id and (outcome.model or outcome.shadow):
            # The scores on record (RiskAssessment): compare and drift monitoring read them, not histories. A
            # failed write costs the record, never the member's run: LACE and the score stand, and it is logged.
            try:
                risk.record_assessments(self._store, result, data.member_id, data.encounter_id,
                                        datetime.now(UTC).replace(microsecond=0))
            except Exception as err:  # noqa: BLE001 - a monitoring side-record must not fail the risk step
                _bind().warning("tool.score_readmission_risk.not_recorded", error=type(err).__name__)
        _bind().info("tool.score_readmission_risk", status=result.status, lace=result.lace,
                     model_version=outcome.model.version if outcome.model else None,
                     shadow_version=outcome.shadow.version if outcome.shadow else None,
                     model_reason=outcome.model_reason)
        return result

    # --- write tools --------------------------------------------------------
    def _write(self, name: str, data: ApprovedWrite, write: Callable[[ApprovedWrite], WriteResult], *,
               effect: ServiceEffect = "none") -> WriteResult:
        """Verify the action's approval on this worker, then write (with the approvers the proof names)."""
        approvers = self._gate.approvers(data, effect=effect, tool=name)
        data = data.model_copy(update={"approved_by": approvers})  # type: ignore[attr-defined]
        try:
            result = write(data)
        except InvalidResource as err:
            raise tool_error(INVALID_RESOURCE, f"{name} built an invalid resource: {err}") from None
        except ApplicationError:
            raise
        _bind().info(f"tool.{name}", reference=result.reference, created=result.created)
        return result

    @activity.defn(name="tools.draft_care_plan")
    def draft_care_plan(self, data: care_plan.DraftCarePlanInput) -> WriteResult:
        return self._write("draft_care_plan", data, lambda d: care_plan.draft_care_plan(self._store, d))

    @activity.defn(name="tools.create_task")
    def create_task(self, data: tasks.CreateTaskInput) -> WriteResult:
        return self._write("create_task", data, lambda d: tasks.create_task(self._store, d),
                           effect=data.arguments.effect())

    @activity.defn(name="tools.send_outreach")
    def send_outreach(self, data: outreach.SendOutreachInput) -> WriteResult:
        return self._write("send_outreach", data,
                           lambda d: outreach.send_outreach(self._store, d, now=datetime.now(UTC),
                                                            default_zone=self._plan_zone))
