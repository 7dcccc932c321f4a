"""Deterministic, offline evidence extraction: which criteria of a policy the clinical notes document.

A criterion is met when its evidence phrases occur, not negated (:mod:`tools.negation`), at least
``min_citations`` times. Citations are offsets into the decoded note plus the *criteria file's* phrase,
never note text, so findings can go into workflow history without carrying PHI.

Linear in the note: one compiled expression per set of phrases finds, in one pass, every position where
any phrase starts and which phrases match there (a lookahead per phrase), and the negation check reads a
bounded window before each match. The results are those of matching each phrase on its own with
``re.finditer`` (same expression per phrase, same non-overlapping runs), which the previous version did.
A note that takes longer than its time budget is read up to where the budget ran out and reported as not
fully read (:class:`NoteReading`), never dropped.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.criteria import Criterion, ServicePolicy
from tools.negation import negated
from tools.pas_models import Note

__all__ = [
    "NOTE_TIME_BUDGET_S",
    "REVIEW_TIME_BUDGET_S",
    "Citation",
    "CriterionFinding",
    "EvidenceReading",
    "NoteReading",
    "extract_evidence",
    "read_evidence",
    "unmet_criteria",
]

NOTE_TIME_BUDGET_S = 2.0
"""Seconds one note may take to read for all the policies of a request (a 700 kB note takes ~0.2 s)."""
REVIEW_TIME_BUDGET_S = 20.0
"""Seconds all the notes of a request may take together: well inside the review activity's 60 s timeout,
so a request with many large notes is reported partly read instead of timing out on every attempt."""


class Citation(BaseModel):
    """Where a criterion's phrase occurs in a note: offsets into the decoded text, and the phrase."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    start: int
    end: int
    term: str
    attested_by: str | None = Field(default=None, exclude_if=lambda v: v is None, description=(
        "Who attested it, for an answer of a DTR QuestionnaireResponse (document_id QuestionnaireResponse/<id>, "
        "start/end the answered item's index): a Practitioner or Organization reference, never a name."))


class CriterionFinding(BaseModel):
    """Whether the notes document one criterion."""

    model_config = ConfigDict(frozen=True)

    criterion_id: str
    status: Literal["met", "not_met"]
    citations: list[Citation]
    contrary: list[Citation] = Field(
        default_factory=list,
        description='Negated mentions ("denies radiculopathy"): evidence against, which a reviewer weighs.')


class NoteReading(BaseModel):
    """How much of one note was read: ids and lengths only."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    length: int = Field(description="Characters in the decoded note.")
    read_until: int = Field(description="Offset up to which every phrase was looked for; = length when complete.")

    @property
    def complete(self) -> bool:
        return self.read_until >= self.length


class EvidenceReading(BaseModel):
    """The findings of each policy, and how far each note was read."""

    findings: dict[str, list[CriterionFinding]] = Field(description="policy_id -> one finding per criterion.")
    notes: list[NoteReading]

    @property
    def incomplete(self) -> list[NoteReading]:
        """The notes not fully read within the time budget: their unread part may hold evidence either way."""
        return [n for n in self.notes if not n.complete]


def _words(term: str) -> list[str]:
    # Spaces and hyphens are interchangeable ("face-to-face" = "face to face").
    return [w for w in re.split(r"[\s-]+", term.strip()) if w]


@lru_cache(maxsize=1024)
def _pattern(term: str) -> re.Pattern[str]:
    """The phrase, whole words only, anywhere in a note (what ``finditer`` of one phrase would use)."""
    return re.compile(r"(?<!\w)" + r"[\s-]+".join(re.escape(w) for w in _words(term)) + r"(?!\w)", re.IGNORECASE)


def _same_start(first: str, other: str) -> bool:
    """Whether two first words could both match at one position: one is a prefix of the other (re's case rules)."""
    short, long = sorted((first, other), key=len)
    return re.fullmatch(re.escape(long[:len(short)]), short, re.IGNORECASE) is not None


class _Scanner:
    """One expression finds, left to right, every position where some phrase's first word starts (followed
    by a non-word character, as every phrase requires); each phrase that can start with that word is then
    matched there with its own anchored expression. Linear in the text; the phrase's own expression decides
    every match, so the matches are the ones ``_pattern(term).finditer`` finds."""

    def __init__(self, terms: tuple[str, ...]) -> None:
        firsts = list(dict.fromkeys(_words(t)[0] for t in terms))
        groups = {first: [i for i, t in enumerate(terms) if _same_start(first, _words(t)[0])] for first in firsts}
        # Longer first words first, so the capturing alternative is the longest first word matching there;
        # the group of each first word holds every phrase whose first word can match at the same position.
        firsts.sort(key=len, reverse=True)
        # The one-character class first: the alternation is tried only where some first word can start, which
        # keeps a note of spaces or punctuation (every position a word boundary) as fast as prose.
        initials = "".join(sorted({re.escape(w[0]) for w in firsts}))
        self.candidates = re.compile(
            rf"(?<!\w)(?=[{initials}])(?=(?:" + "|".join(f"({re.escape(w)})" for w in firsts) + r")(?!\w))",
            re.IGNORECASE)
        self.by_group = [groups[w] for w in firsts]
        self.patterns = [_pattern(t) for t in terms]


@lru_cache(maxsize=64)
def _scanner(terms: tuple[str, ...]) -> _Scanner:
    return _Scanner(terms)


_Hit = tuple[int, int, int]  # start, end, term index


def _scan(text: str, terms: tuple[str, ...], deadline: float | None,
          clock: Callable[[], float]) -> tuple[list[list[_Hit]], int]:
    """Per term, its non-overlapping matches (as ``finditer`` gives them), and how far the text was read."""
    scanner = _scanner(terms)
    runs: list[list[_Hit]] = [[] for _ in terms]
    ends = [-1] * len(terms)
    for candidate in scanner.candidates.finditer(text):
        start = candidate.start()
        if deadline is not None and clock() >= deadline:
            return runs, start
        for index in scanner.by_group[candidate.lastindex - 1]:
            # finditer of one term resumes at its previous match's end: a match overlapping it is not found.
            if start < ends[index]:
                continue
            match = scanner.patterns[index].match(text, start)
            if match is not None:
                runs[index].append((start, match.end(), index))
                ends[index] = match.end()
    return runs, len(text)


def _citations(note: Note, criterion: Criterion, runs: list[list[_Hit]], index_of: dict[str, int],
               negations: dict[int, bool]) -> tuple[list[Citation], list[Citation]]:
    """(affirmed, negated) mentions of one criterion; overlapping matches count once, the longest first."""
    found = sorted((start, -(end - start), order, end, term)
                   for order, term in enumerate(criterion.evidence_terms)
                   for start, end, _ in runs[index_of[term]])
    affirmed: list[Citation] = []
    against: list[Citation] = []
    taken_until = -1
    for start, _, _, end, term in found:
        if start < taken_until:
            continue
        taken_until = end
        if start not in negations:
            negations[start] = negated(note.text, start)
        citation = Citation(document_id=note.document_id, start=start, end=end, term=term)
        (against if negations[start] else affirmed).append(citation)
    return affirmed, against


def _ordered(citations: list[Citation]) -> list[Citation]:
    return sorted(citations, key=lambda c: (c.document_id, c.start, c.end, c.term))


def read_evidence(notes: list[Note], policies: Sequence[ServicePolicy], *,
                  note_budget_s: float | None = NOTE_TIME_BUDGET_S,
                  review_budget_s: float | None = REVIEW_TIME_BUDGET_S,
                  clock: Callable[[], float] = time.monotonic) -> EvidenceReading:
    """Each policy's findings over the notes (each note read once for all of them), within the budgets.

    A budget of None means no limit. A note whose budget (or the review's) runs out is read up to that
    point: the findings hold what was found before it, and :attr:`EvidenceReading.incomplete` names it.
    """
    criteria = list({id(c): c for p in policies for c in p.criteria}.values())
    terms = tuple(dict.fromkeys(t for c in criteria for t in c.evidence_terms))
    index_of = {term: index for index, term in enumerate(terms)}
    review_deadline = None if review_budget_s is None else clock() + review_budget_s
    found: dict[int, tuple[list[Citation], list[Citation]]] = {id(c): ([], []) for c in criteria}
    readings: list[NoteReading] = []
    for note in notes:
        deadlines = [d for d in (review_deadline, None if note_budget_s is None else clock() + note_budget_s)
                     if d is not None]
        runs, read_until = _scan(note.text, terms, min(deadlines, default=None), clock)
        readings.append(NoteReading(document_id=note.document_id, length=len(note.text), read_until=read_until))
        negations: dict[int, bool] = {}
        for criterion in criteria:
            affirmed, against = _citations(note, criterion, runs, index_of, negations)
            found[id(criterion)][0].extend(affirmed)
            found[id(criterion)][1].extend(against)
    findings = {
        policy.policy_id: [CriterionFinding(
            criterion_id=c.criterion_id,
            status="met" if len(found[id(c)][0]) >= c.min_citations else "not_met",
            citations=_ordered(found[id(c)][0]), contrary=_ordered(found[id(c)][1]),
        ) for c in policy.criteria]
        for policy in policies}
    return EvidenceReading(findings=findings, notes=readings)


def extract_evidence(notes: list[Note], policy: ServicePolicy) -> list[CriterionFinding]:
    """One finding per criterion of the policy, in the policy's order; the same notes give the same findings.

    Reads every note to its end (no time budget): callers that must bound the time use
    :func:`read_evidence`, which reports a note it could not finish.
    """
    return read_evidence(notes, [policy], note_budget_s=None, review_budget_s=None).findings[policy.policy_id]


def unmet_criteria(findings: list[CriterionFinding]) -> list[str]:
    """The ids of the criteria not met, in policy order (what a pend asks the provider for)."""
    return [f.criterion_id for f in findings if f.status == "not_met"]
