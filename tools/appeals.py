"""An appeal (reconsideration) of an adverse prior-authorization determination: who may ask, by when, for what.

:func:`parse_appeal` reads the ``$appeal`` input Parameters (``expedited``, the ``requester`` on whose behalf, and
optionally new evidence as a completed DTR ``questionnaireResponse``). :func:`check_appeal` decides, from the
records store alone, whether the appeal may open a reconsideration run:

* the ClaimResponse is a stored prior-authorization determination (404 otherwise);
* the caller is a party: the provider who submitted the request, or the plan's staff filing for the member of
  record (``requester`` ``Patient/<member>``); anyone else is refused (403);
* it is adverse: a denial or partial approval, which has a notice (422 otherwise: nothing to appeal);
* it is not itself a reconsideration (422: the next level is the Independent Review Entity);
* the notice's appeal deadline has not passed (422, naming it);
* new evidence, if sent, answers this request's questionnaire in force (:func:`tools.qr_answers.check_response`).

Each refusal is an :class:`AppealRefused` with the HTTP status a FHIR server uses and the fix; nothing is stored or
started on one. :func:`stored_submission` rebuilds the request the run reconsiders from the stored, immutable
request (the original run's history may be gone: Temporal keeps it for its retention period only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from store.records import CareRecordStore, member_of
from store.submissions import SubmissionRecord
from tools.criteria import CriteriaSet
from tools.determination import notice_of
from tools.notice import NOTICE_EXTENSION, reviewers_on_record
from tools.pas_models import PriorAuthSubmission
from tools.pas_request import parse_pas_bundle
from tools.qr_answers import QuestionnaireAnswerError, check_response

__all__ = ["PLAN_STAFF_ROLES", "AppealCase", "AppealRefused", "AppealRequest", "appeal_workflow_id", "check_appeal",
           "parse_appeal", "stored_submission"]

PLAN_STAFF_ROLES = frozenset({"care_coordinator", "rn", "md"})
"""Roles of the plan's staff who take a member's appeal (by phone or letter) and file it for them."""


class AppealRefused(Exception):
    """An appeal refused: the HTTP status, an OperationOutcome issue code, the problem and the fix."""

    def __init__(self, status: Literal[400, 403, 404, 409, 422], code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class AppealRequest:
    """What the ``$appeal`` Parameters ask."""

    expedited: bool = False
    requester: str | None = None
    response: dict[str, Any] | None = None


@dataclass(frozen=True)
class AppealCase:
    """An appeal the store says may open a reconsideration."""

    claim_response: str
    claim_id: str
    member_id: str
    requester: str
    deadline: date
    reviewers: list[str] = field(default_factory=list)


def appeal_workflow_id(claim_response_id: str) -> str:
    """One reconsideration per determination: its business key."""
    return f"prior-auth-appeal-{claim_response_id}"


def parse_appeal(body: Any) -> AppealRequest:  # noqa: ANN401 - any JSON
    """The appeal's Parameters; AppealRefused(400) naming what is wrong."""
    if body is None or body == {}:
        return AppealRequest()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise AppealRefused(400, "structure", "the body is not a FHIR Parameters resource: send Parameters with "
                                              "optional `expedited` (valueBoolean), `requester` (valueReference) "
                                              "and `questionnaireResponse` (resource), or no body")
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise AppealRefused(400, "structure", "Parameters.parameter is not a list of parameters")
    values: dict[str, Any] = {}
    for parameter in parameters:
        name = parameter.get("name")
        if name == "expedited" and isinstance(parameter.get("valueBoolean"), bool):
            values["expedited"] = parameter["valueBoolean"]
        elif name == "requester" and isinstance((parameter.get("valueReference") or {}).get("reference"), str):
            values["requester"] = parameter["valueReference"]["reference"]
        elif name == "questionnaireResponse" and isinstance(parameter.get("resource"), dict):
            values["response"] = parameter["resource"]
        else:
            raise AppealRefused(400, "invalid", f"parameter {str(name)[:40]!r} is not one of expedited (valueBoolean),"
                                                " requester (valueReference), questionnaireResponse (resource)")
    return AppealRequest(**values)


def _extension(resource: dict[str, Any], name: str) -> Any:  # noqa: ANN401 - a FHIR value
    return next((next(v for k, v in e.items() if k.startswith("value")) for e in resource.get("extension") or []
                 if e.get("url") == f"{NOTICE_EXTENSION}-{name}"), None)


def check_appeal(store: CareRecordStore, claim_response_id: str, request: AppealRequest, *, caller: str, role: str,
                 submitter: bool, criteria: CriteriaSet, today: date) -> AppealCase:
    """Whether the appeal may open a reconsideration (see the module docstring); AppealRefused if not.

    ``submitter``: the caller submitted the request (the provider of record)."""
    reference = f"ClaimResponse/{claim_response_id}"
    response = store.get("ClaimResponse", claim_response_id)
    claim_id = ((response or {}).get("request") or {}).get("reference", "").removeprefix("Claim/")
    claim = store.get("Claim", claim_id) if claim_id else None
    if response is None or response.get("use") != "preauthorization" or claim is None:
        raise AppealRefused(404, "not-found", f"no prior-authorization determination {reference}: appeal the "
                                              "ClaimResponse you received for the request")
    member_id = member_of(claim) or ""
    provider = (claim.get("provider") or {}).get("reference") or "the requesting provider"
    if submitter and request.requester in (None, provider, f"Patient/{member_id}"):
        requester = request.requester or provider  # the provider's own appeal, or one filed for the member
    elif role in PLAN_STAFF_ROLES and request.requester == f"Patient/{member_id}":
        requester = request.requester
    else:
        raise AppealRefused(403, "forbidden", (
            "only the member of record or the provider who requested the service may appeal this determination: "
            "a provider appeals from the account that submitted the request; plan staff file a member's appeal "
            "with requester = the member's Patient reference"))
    notice = notice_of(store, reference, member_id)
    if notice is None:
        raise AppealRefused(422, "business-rule", f"{reference} is not a denial or partial approval: there is "
                                                  "nothing to appeal (an approval or a pend has no appeal)")
    if _extension(notice, "reconsideration-of"):
        raise AppealRefused(422, "business-rule", (
            f"{reference} is already a reconsideration: the next level is the Independent Review Entity, to which "
            "the plan forwards the case itself"))
    deadline = _extension(notice, "appeal-deadline")
    if not isinstance(deadline, str):
        raise AppealRefused(422, "business-rule", f"the notice of {reference} states no appeal deadline: ask the "
                                                  "plan's appeals unit to take the appeal by hand")
    last_day = date.fromisoformat(deadline)
    if today > last_day:
        raise AppealRefused(422, "business-rule", (
            f"the appeal deadline of {reference} was {last_day.isoformat()}: an appeal after it is taken only for "
            "good cause, by the plan's appeals unit (42 CFR 422.582(c)), not through this API"))
    if request.response is not None:
        try:
            check_response(request.response, claim=claim, member_id=member_id, criteria=criteria)
        except QuestionnaireAnswerError as err:
            raise AppealRefused(err.status if err.status != 409 else 422, err.code,  # type: ignore[arg-type]
                                f"the questionnaireResponse: {err}") from None
    return AppealCase(claim_response=reference, claim_id=claim_id, member_id=member_id, requester=requester,
                      deadline=last_day, reviewers=reviewers_on_record(notice))


def stored_submission(store: CareRecordStore, record: SubmissionRecord,
                      questionnaire_responses: list[str]) -> PriorAuthSubmission:
    """The request as stored (scoped ids, first receipt), with the QuestionnaireResponses the reconsideration
    reads."""
    resources = [r for r in (store.get(*key.split("/", 1)) for key in record.resources) if r is not None]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}
    parsed = parse_pas_bundle(bundle, None)
    return parsed.model_copy(update={"received_at": record.received_at,
                                     "questionnaire_response_ids": sorted(set(questionnaire_responses))})
