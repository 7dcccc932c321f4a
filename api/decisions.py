"""A decision as the API and the inbox take it, and the status code a refusal becomes."""

from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from api.identity import Identity
from guardrails.actions import ActionArguments
from guardrails.approvals import ApprovalDecision
from runtime.errors import DecisionRefused

__all__ = ["NOT_FOUND", "STATUS_FOR", "DecisionRequest", "decision_refused", "public_detail", "to_decision"]

STATUS_FOR = {"not_found": 404, "conflict": 409, "forbidden": 403, "invalid": 422, "unavailable": 503}

NOT_FOUND = ("no pending approval or run with these ids that you may see; list the items you may decide with "
             "GET /api/approvals (or the inbox)")
"""The one answer for every not-found-or-hidden item or run (unknown run, unknown item, an item or run above
the caller's role, a completed run): the texts they had before told them apart, confirming ids and states."""


class DecisionRequest(BaseModel):
    """A decision as the API takes it: the approver and role come from the token, never the body."""

    decision: Literal["approve", "reject", "edit", "reassign"]
    digest: str = Field(description="Digest of the action you reviewed.")
    reason: str | None = Field(default=None, max_length=500)
    arguments: ActionArguments | None = None
    queue: str | None = None


def to_decision(approval_id: str, body: DecisionRequest, who: Identity) -> ApprovalDecision:
    """The decision the workflow validates: the body, decided by the caller; an invalid one is refused (422)."""
    try:
        return ApprovalDecision(approval_id=approval_id, digest=body.digest, decision=body.decision,
                                approver=who.user_id, role=who.role, reason=body.reason,
                                arguments=body.arguments, queue=body.queue)
    except ValidationError as err:
        first = err.errors()[0]
        raise DecisionRefused("invalid", first["msg"].removeprefix("Value error, ")) from None


async def decision_refused(request: Request, exc: DecisionRefused) -> JSONResponse:
    """The app's handler for a refusal raised by any route: its status code and ``{detail, code}``."""
    return JSONResponse(status_code=STATUS_FOR.get(exc.code, 422),
                        content={"detail": public_detail(exc), "code": exc.code})


def public_detail(refusal: DecisionRefused) -> str:
    """What the caller reads: :data:`NOT_FOUND` for any not_found, whatever the layer below said."""
    return NOT_FOUND if refusal.code == "not_found" else str(refusal)
