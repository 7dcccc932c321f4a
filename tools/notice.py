"""The member's notice of a prior-authorization denial or partial approval (CMS-0057-F, 42 CFR 422.568/422.578).

Every deny or partial determination is written with a notice: a FHIR R4 ``Communication`` addressed to the
member (the requesting provider gets a copy, as a second recipient) about the ``ClaimResponse``, whose payload
is the plain-language text from :func:`notice_text`. The text says what was requested, what was decided for
each line, the specific reason, each criterion not met in words, the medical-policy version applied, that an
automated tool assisted and a physician decided (by reviewer id and role), and the appeal rights with their
clocks from the versioned :class:`AppealRules`.

Pure: everything comes from the arguments. No PHI beyond the member reference: no name, no birth date, and
not the determination's free-text explanation (a model's or reviewer's words may identify someone; the
coded reasons and the policy's own criterion wording say why).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from tools.criteria import CriteriaSet, Criterion, criteria_version_id
from tools.writes import SignedApproval, resource_id

__all__ = [
    "MEDICARE_ADVANTAGE_APPEALS",
    "NOTICE_CATEGORY_SYSTEM",
    "NOTICE_EXTENSION",
    "NOTICE_OUTCOMES",
    "AppealRules",
    "Determination",
    "Reviewer",
    "appeal_deadline",
    "build_notice",
    "notice_id",
    "notice_text",
    "reviewers_on_record",
    "reviewers_of",
]

NOTICE_CATEGORY_SYSTEM = "urn:careloom:notice-kind"
NOTICE_EXTENSION = "urn:careloom:extension:determination-notice"
NOTICE_OUTCOMES = frozenset({"deny", "partial"})
"""The outcomes that are written with a notice."""

_REASON_SYSTEM = "urn:careloom:um-determination-reason"  # = tools.determination.REASON_SYSTEM

# Plain-language wording of the reason codes careloom's planner and reviewers use; any other code is named.
_REASON_WORDS = {
    "criteria-not-met": "The records we received do not show that the medical-necessity criteria of our medical "
                        "policy are met for this service.",
    "member-not-eligible": "The plan's records do not show active coverage for this service on the date "
                           "requested.",
    "quantity-exceeds-policy": "The amount requested is more than our medical policy supports for this need.",
}
_ROLE_WORDS = {"md": "physician", "rn": "registered nurse", "care_coordinator": "care coordinator"}
_TITLES = {"deny": "Notice of denial of medical coverage", "partial": "Notice of partial approval of medical coverage"}


class Determination(Protocol):
    """What a notice reads of a ``tools.determination.WriteDeterminationInput`` (that module imports this one, so
    the type is described here rather than imported: no import circle)."""

    claim_id: str
    member_id: str
    idempotency_key: str
    approved_by: str | None
    approval: SignedApproval | None
    arguments: Any
    decided_at: datetime
    criteria_version: str
    appeal_of: str | None


class AppealRules(BaseModel):
    """The appeal (reconsideration) clocks a notice states; versioned so a notice records which it stated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$", description="Changes whenever any value does.")
    program: str = Field(min_length=3, description="The coverage program these rules are for.")
    regulation: str = Field(min_length=3, description="Where the clocks come from.")
    request_within_days: int = Field(ge=1, description="Calendar days from the notice date to ask for an appeal.")
    expedited_decision_hours: int = Field(ge=1, description="Hours to decide an expedited (fast) appeal.")
    standard_decision_days: int = Field(ge=1, description="Calendar days to decide a standard pre-service appeal.")
    who_may_request: tuple[str, ...] = Field(min_length=1, description="Who may ask, in plain words.")


MEDICARE_ADVANTAGE_APPEALS = AppealRules(
    version="ma-reconsideration-2026.1",
    program="Medicare Advantage (Part C)",
    regulation="42 CFR 422.578-422.590",
    request_within_days=65,
    expedited_decision_hours=72,
    standard_decision_days=30,
    who_may_request=("you (the member)", "the provider who requested the service for you",
                     "a representative you name in writing (a relative, friend, lawyer, doctor or someone else)"),
)
"""Medicare Advantage pre-service reconsideration: ask within 65 calendar days of the notice; decided within
72 hours (expedited) or 30 calendar days (standard)."""


class Reviewer(BaseModel):
    """One person who approved the determination: their user id and role, never a name."""

    model_config = ConfigDict(frozen=True)

    reviewer_id: str
    role: str | None = Field(default=None, description="md, rn or care_coordinator; None when not recorded.")


def notice_id(idempotency_key: str) -> str:
    """The notice's id under the determination's idempotency key (the same key names the same notice)."""
    return resource_id(idempotency_key, "determination-notice")


def appeal_deadline(decided_at: datetime, rules: AppealRules = MEDICARE_ADVANTAGE_APPEALS) -> date:
    """The last calendar day (UTC) to ask for an appeal of a notice dated ``decided_at``."""
    return decided_at.date() + timedelta(days=rules.request_within_days)


def reviewers_of(data: Determination) -> list[Reviewer]:
    """The approvers with their roles from the signed decisions; without them, the ids ``approved_by`` names."""
    decisions = data.approval.decisions if data.approval else []
    found = [Reviewer(reviewer_id=str(d["approver"]), role=d.get("role")) for d in decisions
             if d.get("approver") and d.get("decision", "approve") in ("approve", "edit")]
    if found:
        return list({r.reviewer_id: r for r in found}.values())
    return [Reviewer(reviewer_id=who.strip()) for who in (data.approved_by or "").split(",") if who.strip()]


def reviewers_on_record(notice: dict[str, Any]) -> list[str]:
    """The reviewer ids a stored notice records (its ``-reviewer`` extensions)."""
    return [e["valueString"] for e in notice.get("extension") or []
            if e.get("url") == f"{NOTICE_EXTENSION}-reviewer" and isinstance(e.get("valueString"), str)]


def _criteria_by_id(criteria: CriteriaSet | None, version: str) -> dict[str, Criterion]:
    # Only the wording of the version that was applied: another version's text could say something else.
    if criteria is None or criteria_version_id(criteria) != version:
        return {}
    return {c.criterion_id: c for policy in criteria.services for c in policy.criteria}


def _line_words(item: Any, requested: dict[int, int]) -> str:
    asked = requested.get(item.sequence)
    units = f", {asked} unit(s) requested" if asked is not None else ""
    decided = {"approved": "approved", "denied": "denied",
               "modified": f"approved for {item.approved_quantity} unit(s) only; the rest is denied"}[item.decision]
    return f"- Line {item.sequence}: service code {item.code}{units}: {decided}."


def _reviewer_words(reviewers: list[Reviewer]) -> list[str]:
    physicians = [r for r in reviewers if r.role == "md"]
    others = [r for r in reviewers if r.role != "md"]
    if physicians:
        lines = [f"A physician made this decision: reviewer {r.reviewer_id} (role: md, physician)." for r in physicians]
        lines += [f"Also reviewed by {r.reviewer_id} (role: {r.role}, {_ROLE_WORDS.get(r.role, r.role)})."
                  for r in others if r.role]
        lines += [f"Also reviewed by {r.reviewer_id}." for r in others if not r.role]
        return lines
    ids = ", ".join(r.reviewer_id for r in reviewers)
    return [f"This decision was made by reviewer(s) {ids}. A denial or reduction is only issued when a physician "
            "(role md) is among its reviewers."]


def notice_text(data: Determination, claim: dict[str, Any], criteria: CriteriaSet | None = None,
                rules: AppealRules = MEDICARE_ADVANTAGE_APPEALS) -> str:
    """The plain-language notice of a deny or partial determination (see the module docstring)."""
    args = data.arguments
    if args.outcome not in NOTICE_OUTCOMES:
        raise ValueError(f"a notice is written for a deny or partial, not a {args.outcome}: write none")
    requested = {item["sequence"]: int((item.get("quantity") or {}).get("value", 1)) for item in claim["item"]}
    wording = _criteria_by_id(criteria, data.criteria_version)
    decided_on = data.decided_at.date().isoformat()
    lines = [
        f"{_TITLES[args.outcome]}",
        f"Date of this notice: {decided_on}. Member: Patient/{data.member_id}. Request: Claim/{data.claim_id}.",
        "",
        "What was requested and what we decided:",
        *(_line_words(item, requested) for item in sorted(args.items, key=lambda i: i.sequence)),
        "",
        "Why:",
        *(f"- {_REASON_WORDS.get(code, f'Reason code {code}.')}" for code in args.reason_codes),
    ]
    if args.criteria_cited:
        lines += ["", "The criteria of our medical policy that are not met:"]
        for criterion_id in args.criteria_cited:
            found = wording.get(criterion_id)
            lines.append(f"- {found.description} (criterion {criterion_id})" if found else
                         f"- Criterion {criterion_id} (its full wording is in the medical policy named below)")
    lines += [
        "",
        f"Medical policy applied: {data.criteria_version}.",
        "",
        "Who decided:",
        "An automated tool assisted this review: it compared the medical records sent with the request against "
        "the policy criteria and suggested a decision. It did not make the decision.",
        *_reviewer_words(reviewers_of(data)),
        "",
        *_appeal_words(data, rules),
    ]
    return "\n".join(lines)


def _appeal_words(data: Determination, rules: AppealRules) -> list[str]:
    if data.appeal_of:
        # Medicare Advantage: a reconsideration the plan does not decide fully in the member's favour goes to the
        # Independent Review Entity automatically (42 CFR 422.592); the member does not have to ask.
        return [
            "This decision is a reconsideration (appeal):",
            f"It reconsidered our earlier decision {data.appeal_of}. A physician who took no part in that decision "
            "made this one.",
            "Because we did not decide fully in your favour, we send your case to the Independent Review Entity for "
            "the next level of review automatically; you do not have to ask. They will write to you.",
            f"(Appeal rules version {rules.version}.)",
        ]
    return [
        "Your right to appeal:",
        f"If you disagree, you may ask us to look at this decision again (a reconsideration) under the "
        f"{rules.program} rules ({rules.regulation}). Ask within {rules.request_within_days} calendar days of the "
        f"date of this notice, that is by "
        f"{appeal_deadline(data.decided_at, rules).isoformat()}. Send any records or a letter from your doctor "
        "that support the request. A physician who took no part in this decision will review it.",
        "Who may ask: " + "; ".join(rules.who_may_request) + ".",
        f"Standard appeal: for a service you have not yet received, we decide within {rules.standard_decision_days} "
        "calendar days of receiving the request.",
        f"Fast (expedited) appeal: if waiting could seriously harm your health, you or your doctor may ask for a "
        f"fast appeal, which we decide within {rules.expedited_decision_hours} hours.",
        f"(Appeal rules version {rules.version}.)",
    ]


def build_notice(data: Determination, claim: dict[str, Any], coverage: dict[str, Any],
                 claim_response_id: str, criteria: CriteriaSet | None = None,
                 rules: AppealRules = MEDICARE_ADVANTAGE_APPEALS) -> dict[str, Any]:
    """The notice as a FHIR R4 Communication to the member (the requesting provider copied) about the
    ClaimResponse ``claim_response_id``, its payload the text of :func:`notice_text`."""
    args = data.arguments
    text = notice_text(data, claim, criteria, rules)
    return {
        "resourceType": "Communication",
        "id": notice_id(data.idempotency_key),
        "extension": [
            {"url": f"{NOTICE_EXTENSION}-criteria-version", "valueString": data.criteria_version},
            {"url": f"{NOTICE_EXTENSION}-appeal-rules-version", "valueString": rules.version},
            {"url": f"{NOTICE_EXTENSION}-appeal-deadline",
             "valueDate": appeal_deadline(data.decided_at, rules).isoformat()},
            # Who decided, by id: a reconsideration must be decided by someone else (tools.determination).
            *({"url": f"{NOTICE_EXTENSION}-reviewer", "valueString": r.reviewer_id} for r in reviewers_of(data)),
            *([{"url": f"{NOTICE_EXTENSION}-reconsideration-of", "valueString": data.appeal_of}]
              if data.appeal_of else []),
        ],
        # Recorded, not known delivered (as tools.outreach): "completed" once a mail or portal receipt says so.
        "status": "in-progress",
        "category": [{"coding": [{"system": NOTICE_CATEGORY_SYSTEM, "code": f"prior-auth-{args.outcome}",
                                  "display": _TITLES[args.outcome]}], "text": _TITLES[args.outcome]}],
        "subject": {"reference": f"Patient/{data.member_id}"},
        "about": [{"reference": f"ClaimResponse/{claim_response_id}"}, {"reference": f"Claim/{data.claim_id}"}],
        "recipient": [{"reference": f"Patient/{data.member_id}"}, claim["provider"]],
        "sender": coverage["payor"][0],
        "sent": data.decided_at.isoformat(),
        "topic": {"text": _TITLES[args.outcome]},
        "reasonCode": [{"coding": [{"system": _REASON_SYSTEM, "code": code}], "text": code}
                       for code in args.reason_codes],
        "payload": [{"contentString": text}],
        "note": [{"text": "Recorded by careloom with the determination; the member is the addressee and the "
                          "requesting provider a copy recipient. Not delivered by careloom (no mail or portal "
                          "gateway configured): in-progress until a delivery receipt arrives."}],
    }
