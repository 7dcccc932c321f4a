"""What every write tool shares: deterministic ids and the write result."""

from __future__ import annotations

import uuid

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["SignedApproval", "WriteResult", "resource_id"]

_NAMESPACE = uuid.UUID("6f1d0c3e-8a4b-4c57-9d1e-4b3a2f1e0c9d")


def resource_id(idempotency_key: str, part: str = "") -> str:
    """The id of a resource written under this key: the same key always names the same resource."""
    return str(uuid.uuid5(_NAMESPACE, f"{idempotency_key}#{part}"))


class SignedApproval(BaseModel):
    """The signed decisions that approved one action, handed to the write tool that performs it.

    The worker verifies every signature against the keys it holds (never the run's input), the run they were
    signed for and the digest of the arguments it is about to write (:mod:`tools.approval_check`). The
    decisions are ``agents.approvals.ApprovalDecision`` dumps (that model sits above the tools)."""

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
