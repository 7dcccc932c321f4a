"""A prior-authorization request as the runs see it: identifiers, codes and dates (no clinical text), and a
note's decoded text for the activities that read notes. Pure models (no I/O): :mod:`tools.pas_request` parses
and stores the request Bundles."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["Note", "PriorAuthSubmission", "RequestedService"]


class RequestedService(BaseModel):
    """One requested service line of the Claim."""

    sequence: int
    code: str = Field(description="CPT, HCPCS or revenue code from Claim.item.productOrService.")
    system: str = Field(description="The code's system URI as sent ('' when the submitter gave none).")
    quantity: int = Field(ge=1, description="Units, visits or days requested (1 when not sent).")


class PriorAuthSubmission(BaseModel):
    """A prior-authorization request as identifiers and dates: no clinical text, safe for history."""

    claim_id: str
    member_id: str = Field(description="The Patient id of the member.")
    coverage_id: str
    provider_id: str = Field(description="The requesting Practitioner's id.")
    priority: Literal["expedited", "standard"] = Field(
        description="expedited (72-hour clock) when Claim.priority is stat, else standard (7 days).")
    received_at: AwareDatetime = Field(description="Claim.created in UTC; a bare date is midnight UTC.")
    service_date: date
    items: list[RequestedService]
    note_ids: list[str] = Field(description="DocumentReference ids of the clinical notes, sorted.")


class Note(BaseModel):
    """A clinical note's decoded text. Activity-local: never put one in workflow history."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    text: str
