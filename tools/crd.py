"""CRD (Da Vinci Coverage Requirements Discovery): CDS Hooks answers from the criteria the triage program decides with.

Two services (:data:`SERVICES`), ``order-select`` and ``order-sign``, both prefetching the patient and their
active coverage. :func:`parse_hook_request` checks a hook call (400 :class:`CdsRequestError` naming what is
wrong, 404 :class:`UnknownService`); :func:`answer` says for each ordered item whether prior authorization is
needed — the item's code is covered by a :class:`~tools.criteria.ServicePolicy` (``auth-needed``) or not
(``no-auth``) — which documentation is needed (that policy's criteria) and where the DTR Questionnaire is. It
answers twice, as the CRD guide asks: a card per item, and a ``systemActions`` update adding the
``coverage-information`` extension to the order. Every card's source names the criteria version
(:func:`~tools.criteria.criteria_version_id`).
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from store.fhir_validation import InvalidResource, validate_resource
from tools.criteria import CriteriaSet, ServicePolicy, criteria_version_id
from tools.dtr import order_codes, questionnaire_url

__all__ = [
    "COVERAGE_INFORMATION",
    "CRD_TEMP",
    "ORDER_TYPES",
    "PREFETCH",
    "SERVICES",
    "CdsRequestError",
    "CdsService",
    "HookRequest",
    "ItemDecision",
    "UnknownService",
    "answer",
    "coverage_information",
    "decide_item",
    "discovery",
    "parse_hook_request",
    "pick_coverage",
]

COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
CRD_TEMP = "http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp"
PREFETCH = {"patient": "Patient/{{context.patientId}}",
            "coverage": "Coverage?patient={{context.patientId}}&status=active"}
"""CRD's prefetch templates: the patient, and the active coverage the orders are billed to."""

ORDER_TYPES = ("ServiceRequest", "DeviceRequest", "MedicationRequest", "NutritionOrder", "CommunicationRequest",
               "Appointment")


@dataclass(frozen=True)
class CdsService:
    """One CDS Service of the discovery document."""

    id: str
    hook: Literal["order-select", "order-sign"]
    title: str
    description: str

    def as_json(self) -> dict[str, Any]:
        return {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description,
                "prefetch": dict(PREFETCH)}


SERVICES: dict[str, CdsService] = {s.id: s for s in (
    CdsService("careloom-crd-order-select", "order-select", "careloom coverage requirements (order select)",
               "Whether the selected orders need prior authorization from the plan, and the documentation it needs."),
    CdsService("careloom-crd-order-sign", "order-sign", "careloom coverage requirements (order sign)",
               "Whether the orders being signed need prior authorization from the plan, and the documentation it"
               " needs; adds the CRD coverage-information extension to each order."),
)}


class CdsRequestError(Exception):
    """A hook call that is not a usable CRD request (HTTP 400); the message names the fix."""


class UnknownService(Exception):
    """No CDS Service has this id (HTTP 404)."""


def discovery() -> dict[str, Any]:
    """The ``GET /cds-services`` document."""
    return {"services": [service.as_json() for service in SERVICES.values()]}


@dataclass(frozen=True)
class HookRequest:
    """A checked hook call: the orders to answer for and what was prefetched."""

    service: CdsService
    hook_instance: str
    patient_id: str
    orders: list[dict[str, Any]]
    patient: dict[str, Any] | None
    coverages: list[dict[str, Any]] | None
    """The prefetched Coverage resources, or None when the client sent none (read them from the records)."""


def _prefetched_coverages(value: Any) -> list[dict[str, Any]] | None:  # noqa: ANN401 - any JSON
    if value is None:
        return None
    if isinstance(value, dict) and value.get("resourceType") == "Coverage":
        return [value]
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        return [e["resource"] for e in value.get("entry") or []
                if isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") == "Coverage"]
    raise CdsRequestError("prefetch.coverage is neither a Coverage nor a Bundle of Coverage: send the result of"
                          f" {PREFETCH['coverage']!r}, or leave it out")


def parse_hook_request(service_id: str, body: Any) -> HookRequest:  # noqa: ANN401 - any JSON
    """Check a hook call against its service; raise :class:`UnknownService` or :class:`CdsRequestError`."""
    service = SERVICES.get(service_id)
    if service is None:
        raise UnknownService(f"no CDS Service {service_id!r}: GET /cds-services lists {', '.join(SERVICES)}")
    if not isinstance(body, dict):
        raise CdsRequestError("the body is not a JSON object: send a CDS Hooks request (hook, hookInstance, context)")
    if body.get("hook") != service.hook:
        raise CdsRequestError(f"hook is {body.get('hook')!r} but {service.id} answers {service.hook!r}: call the"
                              " service of your hook (GET /cds-services)")
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        raise CdsRequestError("hookInstance is missing: send the UUID of this hook invocation")
    context = body.get("context")
    if not isinstance(context, dict):
        raise CdsRequestError("context is missing: send the hook's context (patientId, draftOrders)")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        raise CdsRequestError("context.patientId is missing: send the id of the patient the orders are for")
    draft = context.get("draftOrders")
    if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
        raise CdsRequestError("context.draftOrders is not a FHIR Bundle: send the orders as a Bundle of"
                              f" {', '.join(ORDER_TYPES)}")
    orders = [e.get("resource") for e in draft.get("entry") or [] if isinstance(e, dict)]
    for order in orders:
        if not isinstance(order, dict) or order.get("resourceType") not in ORDER_TYPES:
            kind = order.get("resourceType") if isinstance(order, dict) else type(order).__name__
            raise CdsRequestError(f"context.draftOrders holds a {kind}: CRD answers for {', '.join(ORDER_TYPES)}")
        if not isinstance(order.get("id"), str) or not order["id"]:
            raise CdsRequestError(f"a {order['resourceType']} in context.draftOrders has no id: give each draft order"
                                  " an id, the coverage information is returned as an update to it")
        try:
            validate_resource(order)
        except InvalidResource as err:
            raise CdsRequestError(f"context.draftOrders: {order['resourceType']}/{order['id']}: {err}") from None
        if not order_codes(order):
            raise CdsRequestError(f"{order['resourceType']}/{order['id']} has no code: send the CPT, HCPCS or"
                                  " revenue code of the ordered service")
        subject = (order.get("subject") or order.get("patient") or {}).get("reference")
        if subject is not None and subject != f"Patient/{patient_id}":
            raise CdsRequestError(f"{order['resourceType']}/{order['id']} is for {subject}, not context.patientId"
                                  f" {patient_id}: send one patient's orders per hook call")
    if not orders:
        raise CdsRequestError("context.draftOrders has no entries: send the orders being selected or signed")
    if service.hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not selections or not all(isinstance(s, str) for s in selections):
            raise CdsRequestError("context.selections is missing: order-select names the selected orders as"
                                  " ['ServiceRequest/<id>', ...]")
        by_ref = {f"{o['resourceType']}/{o['id']}": o for o in orders}
        missing = [s for s in selections if s not in by_ref]
        if missing:
            raise CdsRequestError(f"context.selections names {', '.join(missing)}, not in context.draftOrders:"
                                  " select orders of the Bundle")
        orders = [by_ref[s] for s in selections]
    prefetch = body.get("prefetch") or {}
    if not isinstance(prefetch, dict):
        raise CdsRequestError("prefetch is not an object: send {'patient': ..., 'coverage': ...} or leave it out")
    patient = prefetch.get("patient")
    if patient is not None and (not isinstance(patient, dict) or patient.get("resourceType") != "Patient"):
        raise CdsRequestError("prefetch.patient is not a Patient: send the result of 'Patient/{{context.patientId}}'")
    if patient is not None and patient.get("id") != patient_id:
        raise CdsRequestError(f"prefetch.patient is Patient/{patient.get('id')}, not context.patientId"
                              f" {patient_id}: prefetch the patient the orders are for")
    return HookRequest(service=service, hook_instance=body["hookInstance"], patient_id=patient_id, orders=orders,
                       patient=patient, coverages=_prefetched_coverages(prefetch.get("coverage")))


def _in_force(coverage: dict[str, Any], today: date) -> bool:
    period = coverage.get("period") or {}
    start, end = period.get("start"), period.get("end")
    return (coverage.get("status") == "active" and (start is None or start[:10] <= today.isoformat())
            and (end is None or end[:10] >= today.isoformat()))


def pick_coverage(coverages: list[dict[str, Any]], patient_id: str, today: date) -> dict[str, Any] | None:
    """The patient's coverage in force today, else their latest one (answered not-covered), else None."""
    own = [c for c in coverages if (c.get("beneficiary") or {}).get("reference") == f"Patient/{patient_id}"]
    in_force = [c for c in own if _in_force(c, today)]
    if in_force:
        return in_force[0]
    return max(own, key=lambda c: (c.get("period") or {}).get("end") or "", default=None)


@dataclass(frozen=True)
class ItemDecision:
    """What CRD says about one ordered item."""

    order_ref: str
    code: str
    covered: Literal["covered", "not-covered"]
    pa_needed: Literal["auth-needed", "no-auth"] | None
    policy: ServicePolicy | None
    questionnaire: str | None
    """The canonical (url|version) of the DTR Questionnaire, when documentation is needed."""
    assertion_id: str


def decide_item(order: dict[str, Any], coverage: dict[str, Any], criteria: CriteriaSet, *, today: date,
                base_url: str) -> ItemDecision:
    """Whether one order is covered and needs prior authorization, from the criteria set."""
    codes = order_codes(order)
    policy = next((p for p in (criteria.policy_for(c) for c in codes) if p is not None), None)
    code = next((c for c in codes if policy is not None and c in policy.codes), codes[0])
    order_ref = f"{order['resourceType']}/{order['id']}"
    version = criteria_version_id(criteria)
    # Same order, code, coverage, criteria and day: the same assertion id (an audit can match card and claim).
    digest = hashlib.sha256("|".join((order_ref, code, coverage["id"], version, today.isoformat())).encode())
    covered = "covered" if _in_force(coverage, today) else "not-covered"
    needs_pa = covered == "covered" and policy is not None
    return ItemDecision(
        order_ref=order_ref, code=code, covered=covered,
        pa_needed=None if covered == "not-covered" else ("auth-needed" if needs_pa else "no-auth"),
        policy=policy,
        questionnaire=f"{questionnaire_url(base_url, policy)}|{version}" if needs_pa and policy else None,
        assertion_id=f"crd-{digest.hexdigest()[:24]}")


def coverage_information(decision: ItemDecision, coverage_id: str, today: date) -> dict[str, Any]:
    """The CRD ``coverage-information`` extension of one decision (invariants crd-ci-q1/q2 hold)."""
    parts: list[dict[str, Any]] = [
        {"url": "coverage", "valueReference": {"reference": f"Coverage/{coverage_id}"}},
        {"url": "covered", "valueCode": decision.covered},
    ]
    if decision.pa_needed is not None:
        parts.append({"url": "pa-needed", "valueCode": decision.pa_needed})
    if decision.questionnaire is not None:
        parts += [{"url": "doc-needed", "valueCode": "clinical"},
                  {"url": "doc-purpose", "valueCode": "withpa"},
                  {"url": "questionnaire", "valueCanonical": decision.questionnaire}]
    parts += [{"url": "date", "valueDate": today.isoformat()},
              {"url": "coverage-assertion-id", "valueString": decision.assertion_id}]
    return {"url": COVERAGE_INFORMATION, "extension": parts}


def _summary(decision: ItemDecision) -> str:
    if decision.covered == "not-covered":
        text = f"{decision.code}: not covered — the member's coverage is not in force"
    elif decision.policy is None:
        text = f"{decision.code}: no prior authorization needed"
    else:
        text = f"Prior authorization needed for {decision.code} ({decision.policy.title})"
    return text if len(text) < 140 else text[:138] + "…"


def _card(decision: ItemDecision, criteria: CriteriaSet) -> dict[str, Any]:
    version = criteria_version_id(criteria)
    if decision.covered == "not-covered":
        detail, indicator = (f"The coverage on file for this patient is not in force today, so {decision.order_ref}"
                             " would not be paid by the plan. Check the patient's current insurance."), "warning"
    elif decision.policy is None:
        detail, indicator = (f"No medical-policy criteria of the plan cover {decision.code}: it needs no prior"
                             " authorization."), "info"
    else:
        lines = "\n".join(f"- **{c.criterion_id}**: {c.description}" for c in decision.policy.criteria)
        detail = (f"The plan's medical policy *{decision.policy.title}* requires prior authorization for"
                  f" {decision.code}. Documentation needed (each criterion):\n\n{lines}\n\nComplete the DTR"
                  f" questionnaire `{decision.questionnaire}`; answers already in the plan's records are"
                  " pre-filled.")
        indicator = "warning"
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, decision.assertion_id)),
        "summary": _summary(decision), "detail": detail, "indicator": indicator,
        "source": {"label": f"careloom utilization management — {version}",
                   "topic": {"system": CRD_TEMP, "code": "coverage-info", "display": "Coverage Information"}},
    }
    if decision.questionnaire is not None:
        card["links"] = [{"label": "Complete the documentation (DTR questionnaire)",
                          "url": decision.questionnaire.split("|", 1)[0], "type": "absolute"}]
    return card


def _with_extension(order: dict[str, Any], extension: dict[str, Any], coverage_id: str) -> dict[str, Any]:
    updated = copy.deepcopy(order)
    # A previous answer about the same coverage is replaced, not stacked.
    kept = [e for e in updated.get("extension", []) if not (
        e.get("url") == COVERAGE_INFORMATION and {"url": "coverage", "valueReference": {
            "reference": f"Coverage/{coverage_id}"}} in e.get("extension", []))]
    updated["extension"] = [*kept, extension]
    return validate_resource(updated)


def answer(request: HookRequest, coverage: dict[str, Any], criteria: CriteriaSet, *, today: date,
           base_url: str) -> dict[str, Any]:
    """The CDS Hooks response: a card and a ``systemActions`` update per ordered item."""
    cards: list[dict[str, Any]] = []
    actions: list[dict[str, Any]] = []
    for order in request.orders:
        decision = decide_item(order, coverage, criteria, today=today, base_url=base_url)
        cards.append(_card(decision, criteria))
        extension = coverage_information(decision, coverage["id"], today)
        actions.append({"type": "update",
                        "description": f"Add the plan's coverage information to {decision.order_ref}",
                        "resource": _with_extension(order, extension, coverage["id"])})
    return {"cards": cards, "systemActions": actions}
