"""A prior-authorization request as the runs see it: identifiers, codes and dates (no clinical text), and a
note's decoded text for the activities that read notes. Pure models (no I/O): :mod:`tools.pas_request` parses
and stores the request Bundles."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["AppealOf", "Note", "PendAnswer", "PriorAuthSubmission", "RequestedService"]


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


class AppealOf(BaseModel):
    """What a reconsideration run reconsiders: identifiers only (the worker re-reads the decision from the store)."""

    claim_response: str = Field(pattern=r"^ClaimResponse/[A-Za-z0-9\-.]{1,64}$",
                                description="The adverse determination appealed.")
    original_workflow_id: str = Field(description="The run that issued it.")
    reviewers: list[str] = Field(default_factory=list, description=(
        "Who decided it (from the records store at intake): none of them may decide the reconsideration."))
    filed_by: str = Field(min_length=1, max_length=120, description="The user who filed the appeal.")
    requester: str = Field(description="On whose behalf: Patient/<id> (the member) or the requesting provider.")
    filed_at: AwareDatetime = Field(description="When the appeal was received: its clock starts here.")
    expedited: bool = Field(default=False, description="A fast appeal (72 hours) rather than standard (30 days).")


class Note(BaseModel):
    """A clinical note's decoded text. Activity-local: never put one in workflow history."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    text: str
