"""Client-side operations on prior-authorization runs: submit a PAS request Bundle, read a run.

:func:`submit_prior_auth` checks everything before anything is written: the
Bundle is a prior-authorization request, its member and coverage exist, every
service code has a medical policy and there are notes. Only then are the
request's resources stored (one transaction) and the run started under its
business key, so the same request twice joins the first run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from guardrails.prior_auth_policy import PriorAuthPolicy
from store.records import CareRecordStore
from tools.criteria import CriteriaSet
from tools.member import pseudonym, salted_digest
from tools.pas_limits import IntakeLimits
from store.submissions import SubmissionRecord
from tools.appeals import AppealCase, AppealRefused, appeal_workflow_id, stored_submission
from tools.pas_models import AppealOf, PriorAuthSubmission
from tools.qr_answers import QR_CONTEXT
from tools.qr_store import stored_form
from tools.pas_request import check_submission, parse_pas_bundle, save_submission
from workflows.agent_run import ActivityQueues
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthInput

__all__ = ["prior_auth_workflow_id", "start_appeal", "submit_prior_auth"]


def prior_auth_workflow_id(submission: PriorAuthSubmission, salt: str) -> str:
    """The business key of a request: its Claim and requesting provider, salted (ids are listed in plain text)."""
    return f"prior-auth-{salted_digest(f'{submission.provider_id}/{submission.claim_id}', salt)[:16]}"


async def submit_prior_auth(
    client: Client,
    store: CareRecordStore,
    bundle: dict[str, Any],
    *,
    criteria: CriteriaSet,
    policy: PriorAuthPolicy,
    task_queue: str,
    salt: str,
    initiated_by: str = "system",
    tool_attempts: int = 10,
    received_at: datetime | None = None,
    queues: ActivityQueues | None = None,
    limits: IntakeLimits | None = None,
) -> tuple[WorkflowHandle[PriorAuthWorkflow, Any], bool, PriorAuthSubmission]:
    """Check, store and start one request; (handle, started_now, submission).

    Raises :class:`tools.pas_request.PriorAuthRequestError` naming the problem and the fix, with nothing
    written and nothing started. ``received_at`` (default now) starts the CMS-0057-F clock: the time the
    plan received the request, not the provider's ``Claim.created``.
    """
    parsed = parse_pas_bundle(bundle, limits or IntakeLimits())
    check_submission(store, parsed, criteria)
    workflow_id = prior_auth_workflow_id(parsed, salt)  # the business key: the ids as submitted
    # The run is given the stored (scoped) ids and the first receipt time; a conflicting resubmission is refused.
    submission = save_submission(store, bundle, parsed, submitted_by=initiated_by, workflow_id=workflow_id,
                                 received_at=received_at or datetime.now(UTC)).submission
    try:
        handle = await client.start_workflow(
            PriorAuthWorkflow.run,
            PriorAuthInput(submission=submission, policy=policy, initiated_by=initiated_by,
                           tool_attempts=tool_attempts, queues=queues or ActivityQueues()),
            id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            # What the Web UI shows for the run: the member's pseudonym and counts, never codes of the services.
            static_summary=(f"Prior-authorization triage ({submission.priority}) for member "
                            f"{pseudonym(submission.member_id, salt)}"),
            static_details=_static_details(submission, initiated_by),
        )
        return handle, True, submission
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id), False, submission


def _static_details(submission: PriorAuthSubmission, initiated_by: str, *, appeal: str | None = None) -> str:
    """The run's fixed details for the Web UI (markdown): counts and who started it, no clinical content."""
    lines = ["**program**: prior authorization" + (f" ({appeal})" if appeal else ""),
             f"**priority**: {submission.priority}", f"**initiated by**: {initiated_by}",
             f"**service lines**: {len(submission.items)}", f"**clinical notes**: {len(submission.note_ids)}",
             f"**questionnaire responses**: {len(submission.questionnaire_response_ids)}"]
    return "\n".join(lines)


def _responses_of(store: CareRecordStore, claim_id: str, member_id: str) -> list[str]:
    """The stored QuestionnaireResponses about this request (sent with it, or answering its pends)."""
    context = {"url": QR_CONTEXT, "valueReference": {"reference": f"Claim/{claim_id}"}}
    return [r["id"] for r in store.find_for_member("QuestionnaireResponse", member_id)
            if context in (r.get("extension") or [])]


async def start_appeal(
    client: Client,
    store: CareRecordStore,
    case: AppealCase,
    record: SubmissionRecord,
    *,
    filed_by: str,
    expedited: bool,
    policy: PriorAuthPolicy,
    task_queue: str,
    response: dict[str, Any] | None = None,
    tool_attempts: int = 10,
    queues: ActivityQueues | None = None,
    filed_at: datetime | None = None,
) -> WorkflowHandle[PriorAuthWorkflow, Any]:
    """Open the reconsideration of a checked appeal (:func:`tools.appeals.check_appeal`): its new evidence, if any,
    stored, and a run started under the determination's appeal key with every response about the request and the
    deciders of the determination excluded. A second appeal of the same determination is refused (409) and
    leaves nothing stored."""
    key = None
    evidence = _responses_of(store, case.claim_id, case.member_id)
    if response is not None:
        stored, key = stored_form(response, case.claim_id, record.version)
        saved, created = store.create_once([stored], key)
        key = key if created else None
        evidence.append(saved[0]["id"])
    submission = stored_submission(store, record, evidence)
    appeal = AppealOf(claim_response=case.claim_response, original_workflow_id=record.workflow_id or "",
                      reviewers=case.reviewers, filed_by=filed_by, requester=case.requester,
                      filed_at=filed_at or datetime.now(UTC), expedited=expedited)
    workflow_id = appeal_workflow_id(case.claim_response.removeprefix("ClaimResponse/"))
    try:
        return await client.start_workflow(
            PriorAuthWorkflow.run,
            PriorAuthInput(submission=submission, policy=policy, initiated_by=filed_by, tool_attempts=tool_attempts,
                           queues=queues or ActivityQueues(), appeal=appeal),
            id=workflow_id, task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"Prior-authorization reconsideration ({'expedited' if expedited else 'standard'})",
            static_details=_static_details(submission, filed_by, appeal="reconsideration of a determination"))
    except WorkflowAlreadyStartedError:
        if key is not None:
            store.discard_created(key)
        raise AppealRefused(409, "conflict", (
            f"{case.claim_response} was already appealed (reconsideration {workflow_id}): one reconsideration per "
            "determination; ask for its state with Claim/$inquire")) from None
