"""What every write tool shares: deterministic ids, the write result, what a write does to a member's services,
and the gate a write passes before it writes.

The approval proof itself is judged above the tools (:class:`guardrails.approval_check.ApprovalCheck` is the
:class:`WriteGate` a worker gives its tool hosts), so the tools import no guardrail and cannot run unchecked:
every write tool host takes a gate, none has a default.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

__all__ = ["ApprovedWrite", "ServiceEffect", "SignedApproval", "WriteGate", "WriteResult", "most_adverse",
           "resource_id"]

ServiceEffect = Literal["none", "denies", "delays", "reduces", "terminates"]
"""What an action does to a member's services; anything but ``none`` is adverse."""

_RANK: dict[str, int] = {"none": 0, "delays": 1, "reduces": 2, "denies": 3, "terminates": 4}


def most_adverse(*effects: ServiceEffect) -> ServiceEffect:
    """The most severe of ``effects`` (terminates > denies > reduces > delays > none)."""
    return max(effects, key=lambda e: _RANK[e], default="none")

_NAMESPACE = uuid.UUID("6f1d0c3e-8a4b-4c57-9d1e-4b3a2f1e0c9d")


def resource_id(idempotency_key: str, part: str = "") -> str:
    """The id of a resource written under this key: the same key always names the same resource."""
    return str(uuid.uuid5(_NAMESPACE, f"{idempotency_key}#{part}"))


class SignedApproval(BaseModel):
    """The signed decisions that approved one action, handed to the write tool that performs it.

    The worker verifies every signature against the keys it holds (never the run's input), the run they were
    signed for and the digest of the arguments it is about to write (:mod:`guardrails.approval_check`). The
    decisions are ``guardrails.approvals.ApprovalDecision`` dumps (that model sits above the tools)."""

    approval_id: str
    decisions: list[dict[str, Any]] = Field(description="Sign-offs first, the final decision last.")


class WriteResult(BaseModel):
    """What a write tool made (or had already made for the same idempotency key)."""

    reference: str = Field(description="FHIR reference of the primary resource, e.g. Task/<id>.")
    created: bool = Field(description="False when the key had been used: the earlier resource is returned.")
    related: list[str] = Field(default_factory=list, description="Other resources written with it (Goals).")
    folded_into: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "Set when nothing was written because the write folded into another run's resource (one contact a "
        "day): that resource's reference, also in ``reference``. Absent from older histories."))


class ApprovedWrite(Protocol):
    """What a write tool's input carries about its approval."""

    arguments: Any
    approved_by: str | None
    approval: SignedApproval | None


class WriteGate(Protocol):
    """The check every write tool runs, in its activity, before it writes anything."""

    def approvers(self, data: ApprovedWrite, *, effect: ServiceEffect, tool: str) -> str | None:
        """The approvers the verified proof names (None: no human, allowed for a non-adverse action only);
        raises a non-retryable ``ApplicationError`` naming why the write may not run."""
        ...
