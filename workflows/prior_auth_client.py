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
from tools.member import salted_digest
from tools.pas_limits import IntakeLimits
from tools.pas_models import PriorAuthSubmission
from tools.pas_request import check_submission, parse_pas_bundle, save_submission
from workflows.agent_run import ActivityQueues
from workflows.prior_auth import PriorAuthWorkflow
from workflows.prior_auth_models import PriorAuthInput

__all__ = ["prior_auth_workflow_id", "submit_prior_auth"]


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
        )
        return handle, True, submission
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id), False, submission
