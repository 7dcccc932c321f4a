"""A provider's completed DTR QuestionnaireResponse as cited evidence: each answer, and who attested it.

A provider answers a pend (or sends with its request) the :mod:`tools.dtr` Questionnaire of a policy, completed.
:func:`check_response` accepts it only when it is an attestation of *this* request: it names the request's Claim in
the DTR ``qr-context`` extension (:func:`request_of`), is completed or amended, answers the current version of the
questionnaire of a policy covering the request's service, is about the request's member, has a Practitioner,
PractitionerRole or Organization author, uses only the questionnaire's linkIds, and answers at least one criterion.
Refusals are :class:`QuestionnaireAnswerError` with the HTTP status a FHIR server uses, an OperationOutcome issue
code and the fix; messages quote codes and references only, never an answer or evidence text (they may hold PHI).

:func:`attested_findings` turns stored responses into :class:`~tools.evidence.Citation` objects (document
``QuestionnaireResponse/<id>``, offsets = the answered item's index, ``attested_by`` = the author), and
:func:`merge_finding` adds them to the notes' finding: a "yes" with its attester documents the criterion, a "no" is
evidence against it that a reviewer weighs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from store.fhir_validation import InvalidResource, validate_resource
from tools.criteria import CriteriaSet, ServicePolicy, criteria_version_id
from tools.dtr import questionnaire_id
from tools.evidence import Citation, CriterionFinding

__all__ = [
    "ATTESTING_TYPES",
    "QR_CONTEXT",
    "CheckedResponse",
    "QuestionnaireAnswerError",
    "attested_findings",
    "check_response",
    "merge_finding",
    "request_of",
]

QR_CONTEXT = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/qr-context"
ATTESTING_TYPES = ("Practitioner", "PractitionerRole", "Organization")
"""The resource types an attesting author may be (never a Patient, a Device or a display name)."""
_FINAL = ("completed", "amended")
_PARTS = ("source", "evidence", "attachment")


class QuestionnaireAnswerError(Exception):
    """A QuestionnaireResponse refused: the HTTP status, an OperationOutcome issue code, the problem and the fix."""

    def __init__(self, status: Literal[400, 404, 409, 422], code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _is_response(body: Any) -> bool:  # noqa: ANN401 - any JSON
    return isinstance(body, dict) and body.get("resourceType") == "QuestionnaireResponse"


def request_of(body: Any) -> str:  # noqa: ANN401 - any JSON
    """The claim id the response's ``qr-context`` extension names (``valueReference`` ``Claim/<id>``)."""
    if not _is_response(body):
        raise QuestionnaireAnswerError(400, "structure", "the body is not a FHIR QuestionnaireResponse: send the"
                                                         " completed QuestionnaireResponse of the DTR questionnaire")
    extensions = body.get("extension")
    contexts = [e for e in extensions if isinstance(e, dict) and e.get("url") == QR_CONTEXT] \
        if isinstance(extensions, list) else []
    if not contexts:
        raise QuestionnaireAnswerError(400, "required", (
            f"the QuestionnaireResponse names no request: add the extension {QR_CONTEXT} with valueReference"
            " Claim/<id> of the request it answers"))
    claims: set[str] = set()
    for context in contexts:
        reference = (context.get("valueReference") or {}).get("reference")
        claim_id = reference.removeprefix("Claim/") if isinstance(reference, str) else ""
        if not isinstance(reference, str) or not reference.startswith("Claim/") or not claim_id or "/" in claim_id:
            raise QuestionnaireAnswerError(400, "invalid", (
                f"the {QR_CONTEXT} extension's valueReference is not Claim/<id>: reference the Claim of the"
                " prior-authorization request it answers"))
        claims.add(claim_id)
    if len(claims) > 1:
        raise QuestionnaireAnswerError(400, "invalid", (
            f"the QuestionnaireResponse names {len(claims)} different requests ({', '.join(sorted(claims))}):"
            " send one response per request, naming only the Claim it answers"))
    return claims.pop()


@dataclass(frozen=True)
class CheckedResponse:
    """A QuestionnaireResponse accepted as this request's attestation."""

    response: dict[str, Any]
    policy_id: str
    attested_by: str
    answered: list[str]
    """The criterion ids answered true or false, in item order."""


def _claim_codes(claim: dict[str, Any]) -> list[str]:
    items = claim.get("item") if isinstance(claim.get("item"), list) else []
    return [c["code"] for i in items if isinstance(i, dict) for c in (i.get("productOrService") or {}).get("coding", [])
            if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _policy_of(url: str, criteria: CriteriaSet) -> ServicePolicy | None:
    return next((p for p in criteria.services if url.endswith(f"Questionnaire/{questionnaire_id(p)}")), None)


def _criterion_answers(item: dict[str, Any]) -> list[bool]:
    answers = item.get("answer") if isinstance(item.get("answer"), list) else []
    return [a["valueBoolean"] for a in answers if isinstance(a, dict) and isinstance(a.get("valueBoolean"), bool)]


def check_response(body: Any, *, claim: dict[str, Any], member_id: str,  # noqa: ANN401 - any JSON
                   criteria: CriteriaSet) -> CheckedResponse:
    """Accept a completed response to this claim's questionnaire, or raise :class:`QuestionnaireAnswerError`."""
    if not _is_response(body):
        request_of(body)  # raises the 400 "structure" refusal
    try:
        response = validate_resource(body)
    except InvalidResource as err:
        raise QuestionnaireAnswerError(400, "invalid", f"{err}: correct the resource and send it again") from None
    if request_of(response) != claim["id"]:
        raise QuestionnaireAnswerError(422, "invalid", (
            f"the QuestionnaireResponse answers another request, not Claim/{claim['id']}: set its {QR_CONTEXT}"
            f" extension to Claim/{claim['id']}, or send it with the request it answers"))
    if response.get("status") not in _FINAL:
        raise QuestionnaireAnswerError(422, "business-rule", (
            f"the QuestionnaireResponse is {response.get('status')!r}: an in-progress response is not an"
            " attestation; complete it (status completed) and send it again"))
    url, _, version = str(response.get("questionnaire") or "").partition("|")
    policy = _policy_of(url, criteria)
    if policy is None:
        known = ", ".join(questionnaire_id(p) for p in criteria.services)
        raise QuestionnaireAnswerError(422, "not-supported", (
            "the QuestionnaireResponse does not answer a questionnaire of this plan: answer one of " + known))
    codes = _claim_codes(claim)
    if not set(policy.codes) & set(codes):
        wanted = [questionnaire_id(p) for p in criteria.services if set(p.codes) & set(codes)]
        raise QuestionnaireAnswerError(422, "invalid", (
            f"{questionnaire_id(policy)} is the questionnaire for another service than Claim/{claim['id']}"
            f" ({', '.join(codes) or 'no codes'}): answer "
            + (", ".join(wanted) if wanted else "nothing: no questionnaire of this plan covers the request")))
    current = criteria_version_id(criteria)
    if version != current:
        raise QuestionnaireAnswerError(422, "not-supported", (
            f"the QuestionnaireResponse answers version {version or '(none)'}; the criteria in force are {current}:"
            " fetch the current questionnaire with $questionnaire-package and answer it"))
    if (response.get("subject") or {}).get("reference") != f"Patient/{member_id}":
        raise QuestionnaireAnswerError(422, "invalid", (
            f"the QuestionnaireResponse is for another member than the request's (Patient/{member_id}): answer"
            " the questionnaire for the request's member"))
    author = (response.get("author") or {}).get("reference")
    kind, _, author_id = author.partition("/") if isinstance(author, str) else ("", "", "")
    if kind not in ATTESTING_TYPES or not author_id or "/" in author_id:
        raise QuestionnaireAnswerError(422, "required", (
            "the QuestionnaireResponse does not say who attests it: set author.reference to the attesting "
            + ", ".join(f"{t}/<id>" for t in ATTESTING_TYPES)))
    criterion_ids = [c.criterion_id for c in policy.criteria]
    link_ids = set(criterion_ids) | {f"{c}.{part}" for c in criterion_ids for part in _PARTS}
    items = [i for i in response.get("item", []) if isinstance(i, dict)]
    for item in items:
        if item.get("linkId") not in link_ids:
            raise QuestionnaireAnswerError(422, "invalid", (
                f"item linkId {str(item.get('linkId'))[:80]!r} is not an item of {questionnaire_id(policy)}:"
                " answer only the questionnaire's items (a criterion id, or it with .source, .evidence or"
                " .attachment)"))
    answered = list(dict.fromkeys(i["linkId"] for i in items if i["linkId"] in criterion_ids and _criterion_answers(i)))
    if not answered:
        raise QuestionnaireAnswerError(422, "required", (
            f"the QuestionnaireResponse answers no criterion of {questionnaire_id(policy)}: answer at least one"
            " criterion item true or false"))
    return CheckedResponse(response=response, policy_id=policy.policy_id, attested_by=author, answered=answered)


def attested_findings(responses: list[tuple[str, dict[str, Any]]],
                      policy: ServicePolicy) -> dict[str, tuple[list[Citation], list[Citation]]]:
    """Per criterion of the policy, the (attested, refuted) answers of the stored completed or amended responses
    to its questionnaire, in response then item order. An answer without an author reference is no attestation."""
    found: dict[str, tuple[list[Citation], list[Citation]]] = {c.criterion_id: ([], []) for c in policy.criteria}
    for stored_id, response in responses:
        url = str(response.get("questionnaire") or "").partition("|")[0]
        author = (response.get("author") or {}).get("reference")
        if (response.get("status") not in _FINAL or not url.endswith(f"Questionnaire/{questionnaire_id(policy)}")
                or not isinstance(author, str)):
            continue
        for index, item in enumerate(response.get("item") or []):
            if not isinstance(item, dict) or item.get("linkId") not in found:
                continue
            criterion_id = item["linkId"]
            for value in _criterion_answers(item):
                citation = Citation(document_id=f"QuestionnaireResponse/{stored_id}", start=index, end=index + 1,
                                    term=f"attested: {criterion_id} {'met' if value else 'not met'}",
                                    attested_by=author)
                found[criterion_id][0 if value else 1].append(citation)
    return found


def merge_finding(finding: CriterionFinding, attested: list[Citation], refuted: list[Citation]) -> CriterionFinding:
    """The notes' finding with the provider's answers added: met iff (the notes met it or a provider attested it)
    and no provider answered it not met."""
    met = (finding.status == "met" or bool(attested)) and not refuted
    return CriterionFinding(criterion_id=finding.criterion_id, status="met" if met else "not_met",
                            citations=[*finding.citations, *attested], contrary=[*finding.contrary, *refuted])

