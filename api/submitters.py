"""Whoever submitted a prior-authorization request never decides it: the API's check, before a decision is signed.

The run's own rule only knows its ``initiated_by`` (the first submitter); an identical resubmission by someone
else, recorded in the records database (:mod:`store.submissions`), is a submitter too. A refusal is 403 and a
row of the access log.
"""

from __future__ import annotations

from fastapi import Request

from api.identity import Identity
from runtime.errors import DecisionRefused
from store.submissions import SubmissionStore, refuse_submitter

__all__ = ["refuse_own_request"]


def refuse_own_request(request: Request, who: Identity, workflow_id: str, approval_id: str | None, *,
                       action: str) -> None:
    """DecisionRefused(forbidden) when the caller submitted the request of this run; recorded when refused."""
    try:
        refuse_submitter(SubmissionStore(request.app.state.store.db), workflow_id, who.user_id)
    except DecisionRefused:
        request.app.state.access_log.record(user_id=who.user_id, role=who.role, action=action,
                                            outcome="refused:submitter", workflow_id=workflow_id,
                                            approval_id=approval_id)
        raise
