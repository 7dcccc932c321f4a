"""What an action's own words do to a member's services: a deterministic, negation-aware classifier.

The guardrails used to read only the effect an action *declares* (``service_effect``, the task kind, the
determination outcome), so a planner could write "Deny continued home health services; terminate
authorization effective today." on a task declared ``none`` and it ran with no human. This module reads the
text itself: every string in an action's arguments (descriptions, reasons, messages, care-plan titles,
goals and activities, determination explanations and codes).

A finding is an adverse verb (deny, terminate, discontinue, reduce, suspend, delay, withhold, stop, cancel,
cut back, revoke, hold, end ...) whose object, within a few words in the same clause, is a service, an
authorization, a benefit, coverage or care ("Reduce PT visits to one per week", "home health services will
end Friday", "termination of the authorization"), or a sustaining verb (approve, authorize, cover, continue,
certify, renew ...) under negation with such an object ("will no longer be covered", "home health is not
medically necessary"). Not findings:

* an adverse verb under negation in its clause: "no denial", "do not discontinue home health", "avoid
  delays in care", "rather than reduce visits";
* the member's own report or choice: "the member denies chest pain", "patient declined home health";
  (a clinical "denies" has a symptom as its object anyway) - but "the member was denied home health" is;
* a verb whose object is not a service: "reduce readmission risk", "stop smoking", "hold metformin",
  "reduce care gaps", "by the end of the week".

A hedge stays a finding ("review whether to reduce PT visits"): a question about cutting a service is for
a clinician too. The vocabulary is small and explicit so a reviewer can read why a text was flagged; the
test corpus (tests/guardrails/test_adverse_content.py) pins both sides.

Pure: no I/O and no project imports but the policy's vocabulary, so the workflow's guardrails and the
worker's approval check (:mod:`tools.approval_check`, :func:`tools.tasks.task_service_effect`) use the
same function on the same arguments and cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, get_origin

from pydantic import BaseModel

from guardrails.policy import ServiceEffect

__all__ = ["SYSTEM_FAILURE_KIND", "AdverseFinding", "ContentJudgement", "classify_text", "content_effect",
           "most_adverse"]

_RANK: dict[str, int] = {"none": 0, "delays": 1, "reduces": 2, "denies": 3, "terminates": 4}


def most_adverse(*effects: ServiceEffect) -> ServiceEffect:
    """The most severe of ``effects`` (terminates > denies > reduces > delays > none)."""
    return max(effects, key=lambda e: _RANK[e], default="none")


@dataclass(frozen=True)
class AdverseFinding:
    """One adverse statement: its effect and the few words that make it (verb ... object), never the whole text."""

    effect: ServiceEffect
    words: str
    field: str

    def describe(self) -> str:
        return f'{self.field} "{self.words}" ({self.effect})'


@dataclass(frozen=True)
class ContentJudgement:
    """What the arguments' text does: the most severe effect found, and every finding."""

    effect: ServiceEffect
    findings: tuple[AdverseFinding, ...]


def _forms(effect: str, *words: str) -> dict[str, str]:
    return dict.fromkeys(words, effect)


# Adverse verbs and their nouns, each with the effect it has on a service.
_ADVERSE: dict[str, str] = {
    **_forms("denies", "deny", "denies", "denied", "denying", "denial", "denials", "decline", "declines",
             "declined", "declining", "refuse", "refuses", "refused", "refusing", "refusal", "reject",
             "rejects", "rejected", "rejecting", "rejection", "withhold", "withholds", "withheld",
             "withholding"),
    **_forms("terminates", "terminate", "terminates", "terminated", "terminating", "termination",
             "discontinue", "discontinues", "discontinued", "discontinuing", "discontinuation", "stop", "stops",
             "stopped", "stopping", "cancel", "cancels", "canceled", "cancelled", "canceling", "cancelling",
             "cancellation", "revoke", "revokes", "revoked", "revoking", "revocation", "withdraw", "withdraws",
             "withdrawn", "withdrawing", "withdrawal", "cease", "ceases", "ceased", "end", "ends", "ended",
             "ending", "phaseout", "winddown"),
    **_forms("reduces", "reduce", "reduces", "reduced", "reducing", "reduction", "reductions", "decrease",
             "decreases", "decreased", "decreasing", "cut", "cuts", "cutting", "cutback", "scaleback", "limit",
             "limits", "limiting", "restrict", "restricts", "restricted", "restricting", "shorten", "shortens",
             "shortened", "shortening"),
    **_forms("delays", "delay", "delays", "delayed", "delaying", "suspend", "suspends", "suspended",
             "suspending", "suspension", "hold", "holds", "holding", "holdoff", "pause", "pauses", "paused",
             "pausing", "onhold", "postpone", "postpones", "postponed", "postponing", "defer", "defers", "deferred",
             "deferring", "deferral"),
}
# Verbs that keep a service going: negated, they are adverse ("will not be covered", "no longer authorized").
_SUSTAINING: dict[str, str] = {
    **_forms("denies", "approve", "approves", "approved", "approval", "authorize", "authorizes", "authorized",
             "authorise", "authorised", "certify", "certifies", "certified", "cover", "covers", "covered",
             "pay", "pays", "paid", "fund", "funds", "funded", "grant", "grants", "granted", "necessary",
             "eligible", "qualify", "qualifies"),
    **_forms("terminates", "continue", "continues", "continued", "continuing", "extend", "extends", "extended",
             "renew", "renews", "renewed", "resume", "resumes", "resumed"),
}
# Only after "no longer": what the plan or the member stops doing ("will no longer provide home health").
_SUSTAINING_NO_LONGER: dict[str, str] = _forms("terminates", "provide", "provides", "provided", "receive",
                                               "receives", "offer", "offers")

# What a plan grants or keeps up: services, authorizations, benefits, coverage, care and their usual kinds.
_OBJECTS = frozenset({
    "service", "services", "authorization", "authorizations", "authorisation", "auth", "preauthorization",
    "benefit", "benefits", "coverage", "care", "homehealth", "nursing", "therapy", "therapies", "pt", "ot",
    "rehab", "rehabilitation", "visit", "visits", "session", "sessions", "treatment", "treatments", "dme",
    "equipment", "oxygen", "hospice", "admission", "stay", "snf", "infusion", "infusions", "dialysis",
    "transportation", "aide", "aides", "enrollment", "eligibility", "membership", "claim", "request",
    "referral", "referrals", "procedure", "surgery", "imaging", "mri", "supplies", "wheelchair", "careplan",
    "caremanagement", "casemanagement", "appointment", "appointments", "placement",
})
# Nouns that end the search for an object: the verb acts on them, not on a service ("reduce readmission risk").
_BLOCKERS = frozenset({
    "risk", "risks", "gap", "gaps", "barrier", "barriers", "chance", "chances", "likelihood", "readmission",
    "readmissions", "pain", "symptom", "symptoms", "error", "errors", "fall", "falls", "cost", "costs",
    "smoking", "tobacco", "alcohol", "salt", "sodium", "intake", "fluid", "fluids", "weight", "dose", "doses",
    "dosage", "confusion", "anxiety", "stress", "exacerbation", "exacerbations", "complication",
    "complications", "wait", "waiting", "stage", "medication", "medications", "metformin", "insulin", "needed", "required",
})
# Words after which the object search stops: a purpose, a means, a time or a condition follows.
_STOP_WORDS = frozenset({"to", "by", "so", "because", "if", "when", "while", "unless", "until", "than", "then",
                         "after", "before", "since", "once"})
_NEGATIONS = frozenset({
    "no", "not", "never", "none", "nor", "without", "avoid", "avoids", "avoiding", "avoided", "prevent",
    "prevents", "preventing", "prevented", "don't", "dont", "doesn't", "didn't", "won't", "wouldn't",
    "shouldn't", "can't", "cannot", "isn't", "aren't", "wasn't", "weren't", "non", "nolonger", "ratherthan",
    "insteadof", "against",
})
# The member (or family) as the subject of a report or a choice: "the member denies", "patient declined".
_SUBJECTS = frozenset({"member", "patient", "he", "she", "they", "caregiver", "family", "daughter", "son",
                       "wife", "husband", "spouse", "mother", "father"})
_SELF_REPORT = frozenset({"denies", "denied", "declines", "declined", "refuses", "refused", "cancels",
                          "cancelled", "canceled", "stopped", "discontinued", "withdrew"})
_AUXILIARIES = frozenset({"has", "have", "had", "also", "still", "now", "again", "reportedly", "repeatedly"})
_PASSIVE = frozenset({"was", "were", "is", "are", "been", "be", "being", "get", "got", "gets"})
# "end" is a verb only when it is not "the end", "by the end of", "end-stage".
_NOUN_BEFORE_END = frozenset({"the", "a", "an", "by", "at", "of", "to", "before", "until", "this", "that", "week",
                              "month", "day", "year"})

# Active forms whose subject is never the service before them ("pt denies falls" is the patient, not therapy):
# only participles, intransitive verbs and nouns find their object before them ("home health services
# were denied", "coverage ends", "home health denial").
_ACTIVE_ONLY = frozenset({
    "deny", "denies", "denying", "reduce", "reduces", "reducing", "decline", "declines", "declining", "refuse",
    "refuses", "refusing", "reject", "rejects", "rejecting", "withhold", "withholds", "withholding", "cancel",
    "cancels", "canceling", "cancelling", "revoke", "revokes", "revoking", "suspend", "suspends", "suspending",
    "hold", "holds", "holding", "holdoff", "limit", "limits", "limiting", "restrict", "restricts", "restricting",
    "withdraw", "withdraws", "withdrawing", "postpone", "postpones", "postponing", "defer", "defers",
    "deferring", "discontinue", "discontinues", "discontinuing", "terminate", "terminating", "cut", "cuts",
    "cutting", "cutback", "scaleback", "shorten", "shortens", "shortening", "pause", "pausing", "delaying",
    "decreasing", "stopping",
})
_CLAUSE_WORDS = frozenset({"but", "however", "although", "though", "except", "yet", "whereas"})
_OBJECT_WINDOW = 5
_BACK_WINDOW = 4
_NEGATION_WINDOW = 3

# Multi-word terms become one token first, so the windows count them once.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"\bhome\s+health(?:\s+care)?\b", "homehealth"),
    (r"\bcut(?:ting|s)?\s+back\b", "cutback"),
    (r"\bscal(?:e|es|ed|ing)\s+back\b", "scaleback"),
    (r"\bphas(?:e|es|ed|ing)\s+out\b", "phaseout"),
    (r"\bwind(?:s|ing)?\s+down\b", "winddown"),
    (r"\bhold(?:s|ing)?\s+off\b", "holdoff"),
    (r"\bon\s+hold\b", "onhold"),
    (r"\bno\s+longer\b", "nolonger"),
    (r"\brather\s+than\b", "ratherthan"),
    (r"\binstead\s+of\b", "insteadof"),
    (r"\bnot\s+only\b", "notonly"),
    (r"\bcare\s+plan\b", "careplan"),
    (r"\bcare\s+management\b", "caremanagement"),
    (r"\bcase\s+management\b", "casemanagement"),
    (r"\bcare\s+(?:team|manager|managers|coordinator|coordinators|coordination|transition|transitions|gap|gaps"
     r"|giver|givers|episode)\b", "careword"),
    (r"\bprior\s+auth(?:orization)?\b", "auth"),
    (r"\bend\s+of\b", "endof"),
))
_SPELLED = {"homehealth": "home health", "nolonger": "no longer", "cutback": "cut back", "scaleback": "scale back",
            "onhold": "on hold", "holdoff": "hold off", "careplan": "care plan", "phaseout": "phase out",
            "winddown": "wind down"}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.;:!?,()\n]")
_BOUNDARY = frozenset(".;:!?,()\n")


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"[-_/]", " ", text)  # codes like reduce-service read as words
    for pattern, token in _PHRASES:
        text = pattern.sub(f" {token} ", text)
    return _TOKEN.findall(text)


def _clauses(tokens: list[str]) -> Iterator[list[str]]:
    clause: list[str] = []
    for token in tokens:
        if token in _BOUNDARY or token in _CLAUSE_WORDS:
            if clause:
                yield clause
            clause = []
        else:
            clause.append(token)
    if clause:
        yield clause


def _negated(clause: list[str], at: int) -> bool:
    window = clause[max(0, at - _NEGATION_WINDOW):at]
    return any(word in _NEGATIONS for word in window)


def _first_object(clause: list[str], indices: range) -> int | None:
    """The first service word met walking ``indices``, unless a blocker or stop word comes first."""
    for index in indices:
        word = clause[index]
        if word in _OBJECTS:
            return index
        if word in _BLOCKERS or word in _STOP_WORDS:
            return None
    return None


def _object_after(clause: list[str], at: int) -> int | None:
    return _first_object(clause, range(at + 1, min(len(clause), at + 1 + _OBJECT_WINDOW)))


def _object_before(clause: list[str], at: int) -> int | None:
    return _first_object(clause, range(at - 1, max(-1, at - 1 - _BACK_WINDOW), -1))


def _reported_by_member(clause: list[str], at: int) -> bool:
    """"the member denies ...", "patient has declined ...": the member's own report or choice, not the plan's."""
    if clause[at] not in _SELF_REPORT:
        return False
    index = at - 1
    while index >= 0 and clause[index] in _AUXILIARIES:
        index -= 1
    return index >= 0 and clause[index] in _SUBJECTS


def _is_verb_end(clause: list[str], at: int) -> bool:
    return not (at > 0 and clause[at - 1] in _NOUN_BEFORE_END)


def _words(clause: list[str], a: int, b: int) -> str:
    low, high = min(a, b), max(a, b)
    words = " ".join(clause[low:high + 1])
    for token, spelled in _SPELLED.items():
        words = words.replace(token, spelled)
    return words


def classify_text(text: str, field: str = "text") -> list[AdverseFinding]:
    """Every adverse statement in ``text`` (empty when there is none)."""
    findings: list[AdverseFinding] = []
    for clause in _clauses(_tokens(text)):
        for at, word in enumerate(clause):
            if word in _ADVERSE:
                if word in ("end", "ends", "ended", "ending") and not _is_verb_end(clause, at):
                    continue
                if _negated(clause, at) or _reported_by_member(clause, at):
                    continue
                target = _object_after(clause, at)
                if target is None and word not in _ACTIVE_ONLY:
                    target = _object_before(clause, at)
                if target is not None:
                    findings.append(AdverseFinding(_ADVERSE[word], _words(clause, at, target), field))  # type: ignore[arg-type]
            elif word in _SUSTAINING or word in _SUSTAINING_NO_LONGER:
                window = clause[max(0, at - _NEGATION_WINDOW):at]
                no_longer = "nolonger" in window
                if word in _SUSTAINING_NO_LONGER and not no_longer:
                    continue
                if not (no_longer or _negated(clause, at)):
                    continue
                target = _object_after(clause, at)
                if target is None:
                    target = _object_before(clause, at)
                if target is not None:
                    effect = "terminates" if no_longer else {**_SUSTAINING, **_SUSTAINING_NO_LONGER}[word]
                    start = next(i for i in range(max(0, at - _NEGATION_WINDOW), at)
                                 if clause[i] in _NEGATIONS)
                    findings.append(AdverseFinding(effect, _words(clause, min(start, target), max(at, target)),  # type: ignore[arg-type]
                                                   field))
    return findings


SYSTEM_FAILURE_KIND = "run-failure-review"
"""The Task careloom itself writes when a run cannot go on: its ``reason`` quotes the failure (which may well
say "an action that denies a service needs an MD"), so that one field is not read as the action's intent.
A planner may not propose this kind (:func:`guardrails.rules.evaluate_action` blocks it)."""


def _texts(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        quoted = {"reason"} if getattr(value, "kind", None) == SYSTEM_FAILURE_KIND else set()
        for name, info in type(value).model_fields.items():
            # A Literal field (tool tag, task kind, channel, outcome) is a code from a fixed vocabulary, not
            # text: what a code does is the declared effect's business (ADVERSE_TASK_KINDS, the outcome).
            if get_origin(info.annotation) is not Literal and name not in quoted:
                yield from _texts(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _texts(item, f"{path}[{index}]")
    elif isinstance(value, (int, float, date, datetime)) or value is None:
        return


def content_effect(arguments: BaseModel) -> ContentJudgement:
    """What the text of an action's arguments does to the member's services, whatever the action declares."""
    findings = tuple(f for path, text in _texts(arguments, "") for f in classify_text(text, path))
    return ContentJudgement(most_adverse(*(f.effect for f in findings)), findings)
