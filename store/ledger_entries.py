"""The decision ledger's entries: one fact about one approval, identifiers and codes only.

A pure model module (no I/O), so workflow code can build entries without importing the database
(:mod:`store.ledger` stores and verifies the chain).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["DECISION_EVENTS", "LedgerEntry", "LedgerEvent"]

LedgerEvent = Literal["requested", "reminded", "escalated", "expired", "reassigned", "signed_off", "approved",
                      "rejected", "edited", "sampled", "quality_reviewed", "withdrawn", "run_failed"]
"""``sampled``: an action executed without a human, picked for the retrospective quality review (its
``approval_id`` is the action id); ``quality_reviewed``: a reviewer's finding on a sampled action;
``withdrawn``: the run was withdrawn, cancelled or terminated (per pending item, and once with approval id
``run``; actor and reason say who and why); ``run_failed``: the run could not go on and a person was given a
follow-up Task (approval id ``run``)."""

DECISION_EVENTS = frozenset({"reassigned", "signed_off", "approved", "rejected", "edited"})
"""Entries written for a person's decision: the ledger append verifies the signed decision behind each."""


class LedgerEntry(BaseModel):
    """One fact about one approval. Identifiers and codes only, no PHI."""

    event_id: str = Field(description="Unique per event (workflow id / sequence): retries append once.")
    workflow_id: str
    approval_id: str = Field(description="The approval item, e.g. a3-care-plan.1; for sampled and "
                                         "quality_reviewed entries the action id, e.g. a1-tcm-task.")
    event: LedgerEvent
    tool: str | None = Field(default=None, description="The action kind (send_outreach, create_task, "
                             "draft_care_plan, issue_determination); None on entries written before it was "
                             "recorded.")
    actor: str = Field(description="User id, or 'system' for clocks.")
    role: str | None = None
    at: datetime
    digest: str
    queue: str | None = None
    reason: str | None = None
    policy_id: str
    key_id: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The signing key of the decision (signed decisions only)."))
    run_id: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "The run that wrote the entry (a restarted run under the same workflow id has its own)."))
    verified: bool | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "Set by the appending worker: True for a decision entry whose signed decision it verified against its own "
        "keys and the run; False (with the reason) for one it could not, or any entry another run appended — "
        "recorded as claimed and reported by `careloom ledger verify`."))
    unverified_reason: str | None = Field(default=None, exclude_if=lambda v: v is None)
    confidence: float | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "On ``requested`` entries: the action's confidence as the planner gave it (what confidence calibrators "
        "are fitted on against the decision that follows; docs/calibration.md)."))
    risk_model: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "On ``requested`` entries of a post-discharge run scored by a learned readmission model: "
        "``<name>/<version> sha256:<digest>`` (the model that scored the stay the reviewer saw)."))
