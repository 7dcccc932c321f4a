"""A prior-authorization request as the runs see it: identifiers, codes and dates (no clinical text), and a
note's decoded text for the activities that read notes. Pure models (no I/O): :mod:`tools.pas_request` parses
and stores the request Bundles."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["Note", "PendAnswer", "PriorAuthSubmission", "RequestedService"]


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
    questionnaire_response_ids: list[str] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="Stored ids of the DTR QuestionnaireResponses sent with the request, sorted.")


class PendAnswer(BaseModel):
    """The provider's answer to a pend, as the ``answer_pend`` update carries it: identifiers only.

    The run trusts none of it beyond the id: the evidence review reads the stored QuestionnaireResponse and checks
    again that it answers this request, for this member, against the criteria in force, and who attested it."""

    questionnaire_response: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$",
                                        description="Stored id of the QuestionnaireResponse.")
    submitted_by: str = Field(min_length=1, max_length=120, description="The user who sent it.")
    received_at: AwareDatetime


class Note(BaseModel):
    """A clinical note's decoded text. Activity-local: never put one in workflow history."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    text: str
