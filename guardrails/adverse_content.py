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
worker's approval check (:mod:`guardrails.approval_check`) use the same function (:func:`action_effect`) on
the same arguments and cannot disagree.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, get_origin

from pydantic import BaseModel

from tools.writes import ServiceEffect, most_adverse

__all__ = ["SYSTEM_FAILURE_KIND", "AdverseFinding", "ContentJudgement", "classify_text", "content_effect",
           "action_effect", "non_adverse_quote", "normalise"]



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
             "ending", "phaseout", "winddown", "lapse", "lapses", "lapsed", "lapsing", "expire", "expires", "expired",
             "expiring", "expiration", "remove", "removes", "removed", "removing", "removal", "dc", "nomore"),
    **_forms("reduces", "reduce", "reduces", "reduced", "reducing", "reduction", "reductions", "decrease",
             "decreases", "decreased", "decreasing", "cut", "cuts", "cutting", "cutback", "scaleback", "limit",
             "limits", "limiting", "restrict", "restricts", "restricted", "restricting", "shorten", "shortens",
             "shortened", "shortening", "taper", "tapers", "tapered", "tapering", "lower", "lowers", "lowered",
             "lowering"),
    **_forms("delays", "delay", "delays", "delayed", "delaying", "suspend", "suspends", "suspended",
             "suspending", "suspension", "hold", "holds", "holding", "holdoff", "pause", "pauses", "paused",
             "pausing", "onhold", "postpone", "postpones", "postponed", "postponing", "defer", "defers", "deferred",
             "deferring", "deferral"),
    # A minimal Spanish vocabulary (members and coordinators write Spanish): the plan's usual adverse verbs.
    **_forms("denies", "negar", "niega", "niegan", "negado", "negada", "negados", "negadas", "denegar", "deniega",
             "deniegan", "denegado", "denegada", "denegados", "denegadas", "rechazar", "rechaza", "rechazan",
             "rechazado", "rechazada", "rechazados", "rechazadas"),
    **_forms("terminates", "cancelar", "cancela", "cancelan", "cancelado", "cancelada", "cancelados", "canceladas",
             "terminar", "termina", "terminan", "terminado", "terminada", "terminados", "terminadas",
             "descontinuar", "descontinua", "descontinuan", "descontinuado", "descontinuada", "descontinuados",
             "descontinuadas", "retirar", "retira", "retiran", "retirado", "retirada", "eliminar", "elimina",
             "eliminan", "eliminado", "eliminada", "eliminados", "eliminadas"),
    **_forms("reduces", "reducir", "reducen", "reducido", "reducida", "reducidos", "reducidas", "disminuir",
             "disminuye", "disminuyen", "disminuido", "disminuida"),
    **_forms("delays", "suspender", "suspende", "suspenden", "suspendido", "suspendida", "suspendidos",
             "suspendidas", "retrasar", "retrasa", "retrasan", "retrasado", "retrasada", "aplazar", "aplaza",
             "aplazan", "aplazado", "aplazada", "posponer", "pospone", "posponen", "pospuesto", "pospuesta"),
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
    # Spanish
    "servicio", "servicios", "autorizacion", "autorizaciones", "cobertura", "beneficio", "beneficios", "visita",
    "visitas", "terapia", "terapias", "tratamiento", "tratamientos", "atencion", "cuidado", "cuidados", "cita",
    "citas", "equipo", "oxigeno",
})
# Nouns that end the search for an object: the verb acts on them, not on a service ("reduce readmission risk").
_BLOCKERS = frozenset({
    "risk", "risks", "gap", "gaps", "barrier", "barriers", "chance", "chances", "likelihood", "readmission",
    "readmissions", "pain", "symptom", "symptoms", "error", "errors", "fall", "falls", "cost", "costs",
    "smoking", "tobacco", "alcohol", "salt", "sodium", "intake", "fluid", "fluids", "weight", "dose", "doses",
    "dosage", "confusion", "anxiety", "stress", "exacerbation", "exacerbations", "complication",
    "complications", "wait", "waiting", "stage", "medication", "medications", "metformin", "insulin", "needed", "required",
    # events a plan works to avoid ("reduce ED visits", "no more unplanned admissions")
    "ed", "er", "unplanned", "avoidable", "preventable",
})
# Words after which the object search stops: a purpose, a means, a time or a condition follows.
_STOP_WORDS = frozenset({"to", "by", "so", "because", "if", "when", "while", "unless", "until", "than", "then",
                         "after", "before", "since", "once", "within", "during"})
_NEGATIONS = frozenset({
    "no", "not", "never", "none", "nor", "without", "avoid", "avoids", "avoiding", "avoided", "prevent",
    "prevents", "preventing", "prevented", "don't", "dont", "doesn't", "didn't", "won't", "wouldn't",
    "shouldn't", "can't", "cannot", "isn't", "aren't", "wasn't", "weren't", "non", "nolonger", "ratherthan",
    "insteadof", "against", "sin", "ni", "nunca",  # the last three Spanish
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
    "decreasing", "stopping", "remove", "removes", "removing", "taper", "tapers", "tapering", "lower", "lowers",
    "lowering", "dc", "nomore",
})
_CLAUSE_WORDS = frozenset({"but", "however", "although", "though", "except", "yet", "whereas"})
# Punctuation inside a sentence ends a clause (and a negation's reach: "no denial, terminate the authorization"),
# but a verb right after which it comes ("Terminate, effective today, the authorization") and a header ("Home
# health: denied.") reach across it. A sentence ends at these.
_SOFT = frozenset(",:()")
_SENTENCE_END = frozenset(".;!?\n")
_OBJECT_WINDOW = 5
_PARENTHETICAL = 5  # the words an aside right after the verb may hold ("terminate, effective today, the ...")
_BACK_WINDOW = 4
_NEGATION_WINDOW = 3
# What may come before a verb that reaches across an aside: the start of its clause, or a request or an intent.
_BEFORE_IMPERATIVE = frozenset({"please", "we", "will", "shall", "must", "should", "to", "and", "then", "now"})
# Words the object search walks over without counting: articles, quantifiers, possessives, status words
# ("Deny all of the requested continued home health services").
_FILLERS = frozenset({
    "all", "of", "the", "a", "an", "any", "every", "each", "this", "that", "these", "those", "his", "her",
    "their", "your", "its", "our", "my", "member's", "patient's", "requested", "current", "currently",
    "existing", "ongoing", "continued", "remaining", "further", "additional", "planned", "scheduled",
    "approved", "authorized", "pending", "future", "upcoming", "both", "other", "such",
    "los", "las", "el", "la", "de", "del", "sus", "su", "todos", "todas", "sus", "actuales",  # Spanish
})
# "end" is a noun before these ("coverage end date") and after _NOUN_BEFORE_END.
_NOUN_AFTER_END = frozenset({"date", "dates", "time", "times", "point", "points", "stage", "result", "results",
                             "user", "users", "goal", "goals", "organ", "product"})
# "d/c" before these is a discharge ("d/c home", "d/c to SNF", "d/c summary"), not a discontinuation.
_DISCHARGE_AFTER_DC = frozenset({"home", "to", "from", "summary", "instructions", "date", "planning", "plan",
                                 "careplan", "disposition", "med", "meds", "medications", "paperwork", "order",
                                 "orders", "today", "yesterday", "on"})
# History, not intent: a treatment reported as stopped in the past ("conservative PT was discontinued after 6
# weeks", "therapy stopped due to pain"), which is how an approval cites failed conservative therapy. Only
# these past forms, only with the treatment before them and nothing but past auxiliaries between ("will be
# discontinued" is intent), never about coverage (authorization, services, home health...), never addressed
# to the member ("your PT was discontinued" is a notice), never by the plan ("... by the plan").
_REPORT_FORMS = frozenset({"discontinued", "stopped", "ceased", "ended", "cancelled", "canceled", "suspended",
                           "paused"})
_PAST_AUX = frozenset({"was", "were", "had", "has", "have", "been", "then", "later", "eventually",
                       "subsequently", "previously", "already", "also", "ultimately"})
_COVERAGE = frozenset({
    "service", "services", "authorization", "authorizations", "authorisation", "auth", "preauthorization",
    "benefit", "benefits", "coverage", "homehealth", "enrollment", "eligibility", "membership", "claim",
    "request", "referral", "referrals", "careplan", "caremanagement", "casemanagement", "placement", "care",
})
_ADDRESSEE = frozenset({"you", "your", "yours"})
_AGENTS = frozenset({"plan", "payer", "payor", "insurer", "insurance", "us", "we", "health", "utilization", "um",
                     "reviewer", "reviewers", "director", "careloom", "program", "company", "carrier"})
# "visits end only when goals are met": a condition that keeps a service going, not an end to it.
_ONLY_CONDITIONS = frozenset({"when", "if", "after", "once", "upon"})

# Multi-word terms become one token first, so the windows count them once.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"\bhome\s+health(?:\s+care)?\b", "homehealth"),
    (r"\bhha\b", "homehealth aide"),
    (r"\b(?:salud|atencion|cuidados?)\s+(?:en\s+el\s+hogar|domiciliari[ao]s?|a\s+domicilio)\b", "homehealth"),
    (r"\bhh\b", "homehealth"),
    (r"\bcut(?:ting|s)?\s+back\b", "cutback"),
    (r"\bscal(?:e|es|ed|ing)\s+back\b", "scaleback"),
    (r"\bphas(?:e|es|ed|ing)\s+out\b", "phaseout"),
    (r"\bwind(?:s|ing)?\s+down\b", "winddown"),
    (r"\bhold(?:s|ing)?\s+off\b", "holdoff"),
    (r"\bon\s+hold\b", "onhold"),
    (r"\bno\s+longer\b", "nolonger"),
    (r"\bno\s+(?:more|further|additional)\b", "nomore"),
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
            "winddown": "wind down", "nomore": "no more", "dc": "d/c"}
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[.;:!?,()\n]")
# Clinical shorthand for discontinue, before "/" is read as a space: "d/c home health", "d/c'd".
_DC_PAST = re.compile(r"\bd\s*/\s*c\s*'?e?d\b")
_DC = re.compile(r"\bd\s*/\s*c\b")


def normalise(text: str) -> str:
    """What a reader sees: compatibility forms folded (full-width "Ｄｅｎｙ" is "Deny"), invisible format
    characters dropped (a zero-width space inside "Deny"), accents off ("dény"), lower case."""
    text = "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return text.lower().replace("\u2019", "'").replace("\u2018", "'")


def _tokens(text: str) -> list[str]:
    text = _DC.sub(" dc ", _DC_PAST.sub(" discontinued ", normalise(text)))
    text = re.sub(r"[-_/]", " ", text)  # codes like reduce-service read as words
    for pattern, token in _PHRASES:
        text = pattern.sub(f" {token} ", text)
    return _TOKEN.findall(text)


def _sentences(tokens: list[str]) -> Iterator[list[str]]:
    """Sentences, with their commas, colons, brackets and clause words kept: they bound the searches."""
    sentence: list[str] = []
    for token in tokens:
        if token in _SENTENCE_END:
            if sentence:
                yield sentence
            sentence = []
        else:
            sentence.append(token)
    if sentence:
        yield sentence


def _is_boundary(word: str) -> bool:
    return word in _SOFT or word in _CLAUSE_WORDS


def _clause_before(sentence: list[str], at: int) -> list[str]:
    """The words of ``at``'s clause before it."""
    start = at
    while start > 0 and not _is_boundary(sentence[start - 1]):
        start -= 1
    return sentence[start:at]


def _negated(sentence: list[str], at: int) -> bool:
    window = _clause_before(sentence, at)[-_NEGATION_WINDOW:]
    return any(word in _NEGATIONS for word in window)


def _object_after(sentence: list[str], at: int) -> tuple[int | None, bool]:
    """The first service word after the verb, and whether a blocker ("reduce falls risk") ended the search.

    An imperative right before an aside reaches across it: "Terminate, effective today, the authorization"."""
    index, budget, crossings = at + 1, _OBJECT_WINDOW, 0
    if (index < len(sentence) and sentence[index] in _SOFT and sentence[at] in _ACTIVE_ONLY
            and (at == 0 or _is_boundary(sentence[at - 1]) or sentence[at - 1] in _BEFORE_IMPERATIVE)):
        budget, crossings = budget + _PARENTHETICAL, 2
    while index < len(sentence) and budget > 0:
        word = sentence[index]
        if word in _SOFT and crossings:
            crossings -= 1
        elif _is_boundary(word):
            return None, False
        elif word in _OBJECTS:
            return index, False
        elif word in _BLOCKERS or word in _STOP_WORDS:
            return None, word in _BLOCKERS
        elif word not in _FILLERS:
            budget -= 1
        index += 1
    return None, False


def _object_before(sentence: list[str], at: int) -> int | None:
    """The nearest service word before the verb in its clause; a header's colon is crossed ("Home health: denied")."""
    index, budget = at - 1, _BACK_WINDOW
    if index >= 0 and sentence[index] == ":":
        index -= 1
    while index >= 0 and budget > 0:
        word = sentence[index]
        if _is_boundary(word):
            return None
        if word in _OBJECTS:
            return index
        if word in _BLOCKERS or word in _STOP_WORDS:
            return None
        if word not in _FILLERS:
            budget -= 1
        index -= 1
    return None


def _reported_by_member(sentence: list[str], at: int) -> bool:
    """"the member denies ...", "patient has declined ...": the member's own report or choice, not the plan's."""
    if sentence[at] not in _SELF_REPORT:
        return False
    index = at - 1
    while index >= 0 and sentence[index] in _AUXILIARIES:
        index -= 1
    return index >= 0 and sentence[index] in _SUBJECTS


def _is_history(sentence: list[str], at: int, target: int) -> bool:
    """A treatment reported as stopped in the past, not by the plan, not to the member (see _REPORT_FORMS)."""
    if sentence[at] not in _REPORT_FORMS or target > at:
        return False
    if not all(word in _PAST_AUX for word in sentence[target + 1:at]):
        return False
    clause = _clause_before(sentence, at)
    if any(word in _COVERAGE or word in _ADDRESSEE for word in clause):
        return False
    after = sentence[at + 1:at + 6]
    return not ("by" in after and any(word in _AGENTS for word in after[after.index("by") + 1:]))


def _kept_going(sentence: list[str], at: int, target: int) -> bool:
    """"visits end only when goals are met": the service goes on until a condition, it is not ended."""
    after = sentence[at + 1:at + 3]
    return target < at and len(after) == 2 and after[0] == "only" and after[1] in _ONLY_CONDITIONS


def _is_verb(sentence: list[str], at: int) -> bool:
    word = sentence[at]
    following = sentence[at + 1] if at + 1 < len(sentence) else ""
    if word in ("end", "ends", "ended", "ending"):  # "the end", "by the end of", "coverage end date"
        return not ((at > 0 and sentence[at - 1] in _NOUN_BEFORE_END) or following in _NOUN_AFTER_END)
    if word == "dc":
        return following not in _DISCHARGE_AFTER_DC
    if word.startswith("lower"):  # "lower extremity", "lower back": a place, not a verb
        return following not in _LOWER_BODY
    return True


_LOWER_BODY = frozenset({"extremity", "extremities", "back", "body", "leg", "legs", "limb", "limbs", "abdomen",
                         "abdominal", "gi", "lobe", "respiratory", "urinary", "jaw", "lip", "eyelid", "quadrant"})


def _words(sentence: list[str], a: int, b: int) -> str:
    low, high = min(a, b), max(a, b)
    words = " ".join(sentence[low:high + 1]).replace(" , ", ", ").replace(" : ", ": ")
    for token, spelled in _SPELLED.items():
        words = re.sub(rf"\b{token}\b", spelled, words)
    return words


def classify_text(text: str, field: str = "text") -> list[AdverseFinding]:
    """Every adverse statement in ``text`` (empty when there is none)."""
    findings: list[AdverseFinding] = []
    for sentence in _sentences(_tokens(text)):
        for at, word in enumerate(sentence):
            if word in _ADVERSE:
                if not _is_verb(sentence, at) or _negated(sentence, at) or _reported_by_member(sentence, at):
                    continue
                target, blocked = _object_after(sentence, at)
                header = at > 0 and sentence[at - 1] == ":" and not blocked  # "Home health services: terminate."
                if target is None and (word not in _ACTIVE_ONLY or header):
                    target = _object_before(sentence, at)
                if target is None or _is_history(sentence, at, target) or _kept_going(sentence, at, target):
                    continue
                findings.append(AdverseFinding(_ADVERSE[word], _words(sentence, at, target), field))  # type: ignore[arg-type]
            elif word in _SUSTAINING or word in _SUSTAINING_NO_LONGER:
                window = _clause_before(sentence, at)[-_NEGATION_WINDOW:]
                no_longer = "nolonger" in window
                if word in _SUSTAINING_NO_LONGER and not no_longer:
                    continue
                if not (no_longer or _negated(sentence, at)):
                    continue
                target, _ = _object_after(sentence, at)
                if target is None:
                    target = _object_before(sentence, at)
                if target is not None:
                    effect = "terminates" if no_longer else {**_SUSTAINING, **_SUSTAINING_NO_LONGER}[word]
                    start = next(i for i in range(max(0, at - _NEGATION_WINDOW), at)
                                 if sentence[i] in _NEGATIONS or sentence[i] == "nolonger")
                    findings.append(AdverseFinding(effect, _words(sentence, min(start, target), max(at, target)),  # type: ignore[arg-type]
                                                   field))
    return findings


# Where a quote is cut into parts judged one by one: after a sentence's or a clause's punctuation and before
# a bracket (not inside "adt:GENHOSP" or "a1-task.1").
_QUOTE_PARTS = re.compile(r"(?<=[.;:!?,])(?=\s)|(?<=\n)|(?<=\s)(?=\()")
_LEFT_OUT = "[left out: it reads as an adverse decision; the ledger's run_failed entry has the words]"
_FALLBACK = "the run could not go on; its failure is in the ledger's run_failed entry"


def non_adverse_quote(text: str, max_length: int) -> str:
    """``text`` (at most ``max_length`` characters) with each sentence or part the classifier reads as adverse
    replaced by a note, so careloom can quote an error such as "an action that denies a service needs an MD"
    in its own follow-up Task, and the worker still reads every field of every Task (a forged run cannot use
    that field to write adverse words: the worker refuses them there as anywhere). Non-adverse by
    construction: the result is checked again, and falls back to a fixed sentence if it still reads adverse."""
    kept: list[str] = []
    for part in _QUOTE_PARTS.split(text):
        if not classify_text(part):
            kept.append(part)
        elif not kept or kept[-1] != f" {_LEFT_OUT}":  # one note for adjacent adverse parts
            kept.append(f" {_LEFT_OUT}")
    quoted = re.sub(r"[ \t]{2,}", " ", "".join(kept)).strip()[:max_length]
    return quoted if quoted and not classify_text(quoted) else _FALLBACK[:max_length]


SYSTEM_FAILURE_KIND = "run-failure-review"
"""The Task careloom itself writes when a run cannot go on. Its ``reason`` quotes the failure through
:func:`non_adverse_quote` (the failure may well say "an action that denies a service needs an MD"), and is read
like any other field. A planner may not propose this kind (:func:`guardrails.outreach_rules.evaluate_action` blocks it)."""


def _texts(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, BaseModel):
        for name, info in type(value).model_fields.items():
            # A Literal field (tool tag, task kind, channel, outcome) is a code from a fixed vocabulary, not
            # text: what a code does is the declared effect's business (ADVERSE_TASK_KINDS, the outcome).
            # Every other field is read, a run-failure-review Task's reason too: careloom writes it through
            # non_adverse_quote, and the worker cannot tell careloom's Task from a forged run's.
            if get_origin(info.annotation) is not Literal:
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


def action_effect(arguments: BaseModel) -> ServiceEffect:
    """The action's effect on the member's services: the most adverse of what its arguments declare (their
    ``effect()``) and what its own text does. A planner cannot make "terminate authorization" harmless by
    declaring ``none``; the guardrails and the worker's approval check both judge by this."""
    declared: ServiceEffect = arguments.effect() if hasattr(arguments, "effect") else "none"
    return most_adverse(declared, content_effect(arguments).effect)
