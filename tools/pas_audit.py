"""Who submitted which prior-authorization request, and what became of it: one access-log row and one log line.

Every submission through the API or ``careloom um submit``, accepted or refused, is a row of the access log
(action ``prior_auth.submit``; user, role, time, the run's workflow id when there is one) and one structured
log line ``prior_auth.submit``. Neither carries PHI: no Claim, member or note ids, no values, only the refusal
code (the salted workflow id stands for the request).
"""

from __future__ import annotations

from typing import Literal

import structlog

from runtime.errors import PriorAuthErrorCode
from store.access_log import AccessLog
from tools.pas_limits import LIMIT_CODES

__all__ = ["SUBMIT_ACTION", "IntakeOutcome", "record_intake", "refusal_outcome"]

log = structlog.get_logger(__name__)

SUBMIT_ACTION = "prior_auth.submit"

IntakeOutcome = Literal["started", "duplicate", "refused:conflict", "refused:limit", "refused:invalid"]


def refusal_outcome(code: PriorAuthErrorCode | str) -> IntakeOutcome:
    """The access-log outcome of a refused submission."""
    if code == "conflict":
        return "refused:conflict"
    return "refused:limit" if code in LIMIT_CODES else "refused:invalid"


def record_intake(access_log: AccessLog, *, user_id: str, role: str, outcome: IntakeOutcome, channel: str,
                  workflow_id: str | None = None, code: str | None = None) -> None:
    """The access-log row and the log line of one submission."""
    access_log.record(user_id=user_id, role=role, action=SUBMIT_ACTION, outcome=outcome, workflow_id=workflow_id)
    log.info(SUBMIT_ACTION, user_id=user_id, role=role, outcome=outcome, channel=channel, workflow_id=workflow_id,
             code=code)
