"""DTR (Da Vinci Documentation Templates and Rules): the documentation a service needs, as a Questionnaire, pre-filled.

:func:`build_questionnaire` turns one :class:`~tools.criteria.ServicePolicy` of the criteria set the triage program
decides with into a Questionnaire: one boolean item per criterion (``linkId`` = criterion id, ``text`` = its
description, ``code`` = the service codes the policy covers), each followed by a ``reference`` item for the records
that document it, a ``string`` item for free-text evidence and an ``attachment`` item. Its canonical url ends in
``Questionnaire/um-<policy id>`` and its ``version`` is :func:`~tools.criteria.criteria_version_id`, so a response
names exactly which criteria text it answers.

Each criterion item and its records item carry an SDC ``initialExpression`` in FHIRPath, evaluated by
:func:`prefill` with ``fhirpathpy`` over a Bundle of the member's stored records (Condition, Observation,
Procedure): a record whose code text or display holds one of the criterion's evidence phrases, and which is not
refuted or entered in error, answers the criterion ``true`` and is referenced. A criterion with no such record
is left unanswered — a missing record is not a "no".

:func:`parse_package_request` reads the ``$questionnaire-package`` input Parameters (a ``coverage`` and the
``order`` resources or ``questionnaire`` canonicals); :func:`package` answers the output Parameters, one
``PackageBundle`` per service. Refusals are :class:`DtrRequestError` with the HTTP status a FHIR server uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fhirpathpy import evaluate

from store.fhir_validation import validate_resource
from store.records import CareRecordStore, member_of
from tools.criteria import CriteriaSet, Criterion, ServicePolicy, criteria_version_id

__all__ = [
    "CPT",
    "HCPCS",
    "INFORMATION_ORIGIN",
    "INITIAL_EXPRESSION",
    "PREFILL_TYPES",
    "REVENUE",
    "DtrRequestError",
    "PackageRequest",
    "build_questionnaire",
    "criterion_expression",
    "member_records",
    "operation_outcome",
    "order_codes",
    "package",
    "parse_package_request",
    "prefill",
    "questionnaire_id",
    "questionnaire_url",
    "service_coding",
]

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://bluebutton.cms.gov/resources/codesystem/hcpcs"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
INITIAL_EXPRESSION = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-initialExpression"
INFORMATION_ORIGIN = "http://hl7.org/fhir/us/davinci-dtr/StructureDefinition/information-origin"
PREFILL_TYPES = ("Condition", "Observation", "Procedure")
"""The record types whose codes can answer a criterion (notes are read by the triage program's evidence step)."""

# The coded fields a request resource names its service in (CRD's order types).
_ORDER_CODE_PATHS = {
    "ServiceRequest": "code",
    "DeviceRequest": "codeCodeableConcept",
    "MedicationRequest": "medicationCodeableConcept",
    "NutritionOrder": "code",
    "CommunicationRequest": "reasonCode",
    "Appointment": "serviceType",
}


class DtrRequestError(Exception):
    """A ``$questionnaire-package`` request refused: the HTTP status, an OperationOutcome issue code, the fix."""

    def __init__(self, status: Literal[400, 404, 422], code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def service_coding(code: str) -> dict[str, str]:
    """A Coding of a service code, its system by the code's shape (CPT 5 digits, revenue 4, HCPCS letter+4)."""
    if code.isdigit():
        return {"system": CPT if len(code) == 5 else REVENUE, "code": code}
    return {"system": HCPCS, "code": code}


def questionnaire_id(policy: ServicePolicy) -> str:
    """The Questionnaire id of a policy's documentation: ``um-<policy id>``."""
    return f"um-{policy.policy_id}"


def questionnaire_url(base_url: str, policy: ServicePolicy) -> str:
    """The canonical url (no version) of a policy's Questionnaire on this server."""
    return f"{base_url.rstrip('/')}/fhir/Questionnaire/{questionnaire_id(policy)}"


def _fhirpath_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def criterion_expression(criterion: Criterion) -> str:
    """FHIRPath over a Bundle of the member's records: the records that document the criterion."""
    phrases = " or ".join(f"lower().contains({_fhirpath_string(term.strip().lower())})"
                          for term in criterion.evidence_terms)
    return ("Bundle.entry.resource.where("
            "(resourceType = 'Condition' and verificationStatus.coding"
            ".where(code = 'refuted' or code = 'entered-in-error').empty())"
            " or (resourceType = 'Observation' and (status = 'final' or status = 'amended' or status = 'corrected'"
            " or status = 'preliminary'))"
            " or (resourceType = 'Procedure' and (status = 'completed' or status = 'in-progress')))"
            f".where((code.text | code.coding.display).where({phrases}).exists())")


def _expression(text: str, description: str) -> dict[str, Any]:
    return {"url": INITIAL_EXPRESSION,
            "valueExpression": {"language": "text/fhirpath", "expression": text, "description": description}}


def build_questionnaire(criteria: CriteriaSet, policy: ServicePolicy, *, base_url: str) -> dict[str, Any]:
    """The DTR Questionnaire of one policy's criteria (validated as R4B)."""
    codes = [service_coding(code) for code in policy.codes]
    items: list[dict[str, Any]] = []
    for criterion in policy.criteria:
        matching = criterion_expression(criterion)
        items += [
            {"linkId": criterion.criterion_id, "text": criterion.description, "type": "boolean", "required": True,
             "code": codes, "extension": [_expression(f"{matching}.exists()",
                                                      "Whether the member's records document this criterion")]},
            {"linkId": f"{criterion.criterion_id}.source", "type": "reference", "repeats": True,
             "text": "The records that document it",
             "extension": [_expression(f"{matching}.select(resourceType + '/' + id)",
                                       "The member's records that document this criterion")]},
            {"linkId": f"{criterion.criterion_id}.evidence", "type": "string",
             "text": "Where the clinical record documents it (note, date, finding)"},
            {"linkId": f"{criterion.criterion_id}.attachment", "type": "attachment",
             "text": "The supporting document, if it is not in the records referenced"},
        ]
    questionnaire = {
        "resourceType": "Questionnaire", "id": questionnaire_id(policy),
        "url": questionnaire_url(base_url, policy), "version": criteria_version_id(criteria),
        "name": "UM" + "".join(part.capitalize() for part in policy.policy_id.split("-")),
        "title": f"Documentation for prior authorization: {policy.title}",
        "status": "active", "subjectType": ["Patient"], "date": criteria.effective.isoformat(),
        "publisher": "careloom", "code": codes,
        "description": (f"One item per criterion of the {policy.policy_id} policy of the utilization-management"
                        f" medical policy {criteria.version}; answers are pre-filled from the plan's records where"
                        " they document a criterion."),
        "item": items,
    }
    return validate_resource(questionnaire)


def _records_bundle(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r} for r in records]}


def _initial(item: dict[str, Any]) -> str | None:
    for extension in item.get("extension", []):
        if extension.get("url") == INITIAL_EXPRESSION:
            return extension["valueExpression"]["expression"]
    return None


_AUTO = {"url": INFORMATION_ORIGIN, "extension": [{"url": "source", "valueCode": "auto-server"}]}


def prefill(questionnaire: dict[str, Any], records: list[dict[str, Any]], *, patient_id: str,
            authored: datetime, response_id: str) -> dict[str, Any]:
    """An in-progress QuestionnaireResponse with every answer the records give (validated as R4B).

    Each item's ``initialExpression`` is evaluated with fhirpathpy over a Bundle of ``records``; a criterion is
    answered only when the result is ``true``, with the documenting records in its ``.source`` item.
    """
    bundle = _records_bundle(records)
    answered: list[dict[str, Any]] = []
    for item in questionnaire["item"]:
        expression = _initial(item)
        if expression is None:
            continue
        values = evaluate(bundle, expression)
        if item["type"] == "boolean" and values == [True]:
            answers = [{"valueBoolean": True, "extension": [_AUTO]}]
        elif item["type"] == "reference" and values:
            answers = [{"valueReference": {"reference": ref}, "extension": [_AUTO]} for ref in values]
        else:
            continue
        answered.append({"linkId": item["linkId"], "text": item.get("text"), "answer": answers})
    response = {
        "resourceType": "QuestionnaireResponse", "id": response_id,
        "questionnaire": f"{questionnaire['url']}|{questionnaire['version']}", "status": "in-progress",
        "subject": {"reference": f"Patient/{patient_id}"}, "authored": authored.isoformat(),
        "author": {"display": "careloom (pre-filled from the plan's records)"},
        "item": [{k: v for k, v in item.items() if v is not None} for item in answered],
    }
    return validate_resource(response)


def member_records(store: CareRecordStore, member_id: str) -> list[dict[str, Any]]:
    """The member's stored records of :data:`PREFILL_TYPES`."""
    return [record for rtype in PREFILL_TYPES for record in store.find_for_member(rtype, member_id)]


def order_codes(order: dict[str, Any]) -> list[str]:
    """The codes an order (ServiceRequest, DeviceRequest, ...) names its service by."""
    concept = order.get(_ORDER_CODE_PATHS.get(order.get("resourceType", ""), "code"))
    concepts = concept if isinstance(concept, list) else [concept]
    return [coding["code"] for c in concepts if isinstance(c, dict)
            for coding in c.get("coding", []) if isinstance(coding, dict) and isinstance(coding.get("code"), str)]


@dataclass(frozen=True)
class PackageRequest:
    """What a ``$questionnaire-package`` call asks for."""

    coverage_id: str
    policies: list[ServicePolicy]
    unknown_codes: list[str] = field(default_factory=list)
    """Ordered codes no policy covers: they need no documentation from this plan."""
    order_subjects: list[str] = field(default_factory=list)
    """The patient references the orders name, checked against the coverage's beneficiary."""


def _coverage_id(parameter: dict[str, Any]) -> str:
    resource = parameter.get("resource")
    if isinstance(resource, dict):
        if resource.get("resourceType") != "Coverage" or not isinstance(resource.get("id"), str):
            raise DtrRequestError(400, "invalid", "the `coverage` parameter's resource is not a Coverage with an"
                                                  " id: send the member's Coverage resource as the plan issued it")
        return resource["id"]
    reference = (parameter.get("valueReference") or {}).get("reference")
    if isinstance(reference, str) and reference.startswith("Coverage/") and len(reference) > len("Coverage/"):
        return reference.removeprefix("Coverage/")
    raise DtrRequestError(400, "invalid", "the `coverage` parameter has neither a Coverage resource nor a"
                                          " valueReference `Coverage/<id>`: send one of them")


def _policy_of_canonical(criteria: CriteriaSet, canonical: str) -> ServicePolicy:
    url, _, version = canonical.partition("|")
    wanted = url.rstrip("/").rsplit("/", 1)[-1]
    current = criteria_version_id(criteria)
    for policy in criteria.services:
        if questionnaire_id(policy) == wanted:
            if version and version != current:
                raise DtrRequestError(422, "not-supported", (
                    f"questionnaire version {version!r} is not the criteria in force ({current}): ask for"
                    f" {url}|{current}, or leave the version out"))
            return policy
    known = ", ".join(questionnaire_id(p) for p in criteria.services)
    raise DtrRequestError(422, "not-supported", f"no questionnaire {wanted!r}: this plan's questionnaires are {known}")


def parse_package_request(body: Any, criteria: CriteriaSet) -> PackageRequest:  # noqa: ANN401 - any JSON
    """Read the DTR input Parameters; raise :class:`DtrRequestError` naming what is wrong and the fix."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise DtrRequestError(400, "structure", "the body is not a FHIR Parameters resource: send Parameters with a"
                                                " `coverage` and the `order` resources (or `questionnaire` canonicals)")
    parameters = body.get("parameter")
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise DtrRequestError(400, "structure", "Parameters.parameter is missing or not a list of parameters: add"
                                                " `coverage` and `order` parameters")
    coverages = [p for p in parameters if p.get("name") == "coverage"]
    if not coverages:
        raise DtrRequestError(400, "required", "no `coverage` parameter: send the member's Coverage (DTR requires"
                                               " it to know whose documentation is collected)")
    coverage_ids = {_coverage_id(p) for p in coverages}
    if len(coverage_ids) > 1:
        raise DtrRequestError(400, "invalid", f"{len(coverage_ids)} different coverages were sent: send the one"
                                              " Coverage the orders are billed to")
    policies: dict[str, ServicePolicy] = {}
    unknown: list[str] = []
    subjects: list[str] = []
    asked = False
    for parameter in parameters:
        if parameter.get("name") == "order":
            asked = True
            order = parameter.get("resource")
            if not isinstance(order, dict) or order.get("resourceType") not in _ORDER_CODE_PATHS:
                raise DtrRequestError(400, "invalid", "an `order` parameter has no request resource: send the"
                                                      f" order as one of {', '.join(_ORDER_CODE_PATHS)}")
            codes = order_codes(order)
            subject = (order.get("subject") or order.get("patient") or {}).get("reference")
            if isinstance(subject, str):
                subjects.append(subject)
            if not codes:
                raise DtrRequestError(400, "required", f"the {order['resourceType']} order has no code: send the"
                                                       " CPT, HCPCS or revenue code of the ordered service")
            found = [p for p in (criteria.policy_for(c) for c in codes) if p is not None]
            if found:
                policies.setdefault(found[0].policy_id, found[0])
            else:
                unknown += codes
        elif parameter.get("name") == "questionnaire":
            asked = True
            canonical = parameter.get("valueCanonical")
            if not isinstance(canonical, str) or not canonical:
                raise DtrRequestError(400, "invalid", "a `questionnaire` parameter has no valueCanonical: send the"
                                                      " canonical the CRD card linked")
            policy = _policy_of_canonical(criteria, canonical)
            policies.setdefault(policy.policy_id, policy)
    if not asked:
        raise DtrRequestError(400, "required", "neither an `order` nor a `questionnaire` parameter (DTR dtr-1): send"
                                               " the orders, or the questionnaire canonicals from the CRD card")
    if not policies:
        raise DtrRequestError(422, "not-supported", (
            f"no documentation criteria cover {', '.join(unknown)}: these services need no prior authorization"
            f" from this plan (criteria cover {', '.join(criteria.known_codes)})"))
    return PackageRequest(coverage_id=coverage_ids.pop(), policies=list(policies.values()), unknown_codes=unknown,
                          order_subjects=subjects)


def operation_outcome(severity: Literal["error", "information", "warning"], code: str,
                      message: str) -> dict[str, Any]:
    """An OperationOutcome of one issue (validated as R4B)."""
    return validate_resource({"resourceType": "OperationOutcome",
                              "issue": [{"severity": severity, "code": code, "diagnostics": message}]})


def package(request: PackageRequest, criteria: CriteriaSet, *, coverage: dict[str, Any],
            records: list[dict[str, Any]], base_url: str, now: datetime) -> dict[str, Any]:
    """The ``$questionnaire-package`` output Parameters: per service a PackageBundle with its Questionnaire and the
    QuestionnaireResponse pre-filled from ``records`` (validated as R4B)."""
    patient_id = member_of(coverage)
    if patient_id is None:
        raise DtrRequestError(422, "invalid", f"Coverage/{request.coverage_id} names no beneficiary: the plan's"
                                              " record is incomplete, ask the plan to correct it")
    others = sorted({s for s in request.order_subjects if s != f"Patient/{patient_id}"})
    if others:
        # The response is pre-filled from the coverage's member: orders for someone else must not receive it.
        raise DtrRequestError(422, "invalid", f"the orders are for {', '.join(others)} but Coverage/"
                                              f"{request.coverage_id} covers another member: send the coverage of"
                                              " the patient the orders are for")
    parameters: list[dict[str, Any]] = []
    for policy in request.policies:
        questionnaire = build_questionnaire(criteria, policy, base_url=base_url)
        response = prefill(questionnaire, records, patient_id=patient_id, authored=now,
                           response_id=f"{questionnaire_id(policy)}-{request.coverage_id}"[:64])
        parameters.append({"name": "PackageBundle", "resource": {
            "resourceType": "Bundle", "type": "collection", "timestamp": now.isoformat(),
            "entry": [{"fullUrl": f"{questionnaire['url']}", "resource": questionnaire},
                      {"fullUrl": f"{base_url.rstrip('/')}/fhir/QuestionnaireResponse/{response['id']}",
                       "resource": response}]}})
    if request.unknown_codes:
        parameters.append({"name": "operationOutcome", "resource": operation_outcome(
            "information", "informational",
            f"no documentation is needed for {', '.join(request.unknown_codes)}: no criteria of this plan cover"
            " them")})
    return validate_resource({"resourceType": "Parameters", "parameter": parameters})
