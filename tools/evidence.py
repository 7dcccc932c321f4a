"""Deterministic, offline evidence extraction: which criteria of a policy the clinical notes document.

A criterion is met when its evidence phrases occur, not negated, at least ``min_citations`` times.
Citations are offsets into the decoded note plus the *criteria file's* phrase, never note text, so
findings can go into workflow history without carrying PHI.

Negation follows the NegEx idea, kept small: a cue ("no", "not", "denies", "without", "negative
for", "never", ...) among the five words before a match, in the same sentence and clause ("but",
"however" ... start a new clause), negates it; "no improvement", "without relief" and the like are
not negations of what follows.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.criteria import Criterion, ServicePolicy
from tools.pas_request import Note

__all__ = ["Citation", "CriterionFinding", "extract_evidence", "unmet_criteria"]

_WINDOW_WORDS = 5
_SENTENCE_END = re.compile(r"[.!?;:\n]")
_CLAUSE_START = re.compile(r"\b(?:but|however|although|though|except|yet|aside\s+from)\b", re.IGNORECASE)
_PSEUDO_NEGATION = re.compile(
    r"\b(?:no|not|without)\s+(?:improvement|improved|relief|change|better|benefit|only)\b", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(?:no|not|denies|denied|deny|without|never|none|negative\s+for|free\s+of|absence\s+of)\b|n['’]t\b",
    re.IGNORECASE)
_WORD = re.compile(r"[\w'’-]+")


class Citation(BaseModel):
    """Where a criterion's phrase occurs in a note: offsets into the decoded text, and the phrase."""

    model_config = ConfigDict(frozen=True)

    document_id: str
    start: int
    end: int
    term: str


class CriterionFinding(BaseModel):
    """Whether the notes document one criterion."""

    model_config = ConfigDict(frozen=True)

    criterion_id: str
    status: Literal["met", "not_met"]
    citations: list[Citation]
    contrary: list[Citation] = Field(
        default_factory=list,
        description='Negated mentions ("denies radiculopathy"): evidence against, which a reviewer weighs.')


@lru_cache(maxsize=1024)
def _pattern(term: str) -> re.Pattern[str]:
    # Spaces and hyphens are interchangeable ("face-to-face" = "face to face"); whole words only.
    words = [re.escape(w) for w in re.split(r"[\s-]+", term.strip()) if w]
    return re.compile(r"(?<!\w)" + r"[\s-]+".join(words) + r"(?!\w)", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    head = text[:start]
    boundaries = list(_SENTENCE_END.finditer(head))
    scope = head[boundaries[-1].end():] if boundaries else head
    clauses = list(_CLAUSE_START.finditer(scope))
    if clauses:
        scope = scope[clauses[-1].end():]
    window = " ".join(_WORD.findall(scope)[-_WINDOW_WORDS:])
    return _NEGATION.search(_PSEUDO_NEGATION.sub(" ", window)) is not None


def _matches(note: Note, criterion: Criterion) -> tuple[list[Citation], list[Citation]]:
    """(affirmed, negated) mentions in one note; overlapping matches count once, the longest first."""
    found = sorted(
        ((m.start(), -(m.end() - m.start()), order, m.end(), term)
         for order, term in enumerate(criterion.evidence_terms)
         for m in _pattern(term).finditer(note.text)),
    )
    affirmed: list[Citation] = []
    negated: list[Citation] = []
    taken_until = -1
    for start, _, _, end, term in found:
        if start < taken_until:
            continue
        taken_until = end
        citation = Citation(document_id=note.document_id, start=start, end=end, term=term)
        (negated if _negated(note.text, start) else affirmed).append(citation)
    return affirmed, negated


def _ordered(citations: list[Citation]) -> list[Citation]:
    return sorted(citations, key=lambda c: (c.document_id, c.start, c.end, c.term))


def extract_evidence(notes: list[Note], policy: ServicePolicy) -> list[CriterionFinding]:
    """One finding per criterion of the policy, in the policy's order; the same notes give the same findings."""
    findings: list[CriterionFinding] = []
    for criterion in policy.criteria:
        citations: list[Citation] = []
        contrary: list[Citation] = []
        for note in notes:
            affirmed, negated = _matches(note, criterion)
            citations += affirmed
            contrary += negated
        findings.append(CriterionFinding(
            criterion_id=criterion.criterion_id,
            status="met" if len(citations) >= criterion.min_citations else "not_met",
            citations=_ordered(citations),
            contrary=_ordered(contrary),
        ))
    return findings


def unmet_criteria(findings: list[CriterionFinding]) -> list[str]:
    """The ids of the criteria not met, in policy order (what a pend asks the provider for)."""
    return [f.criterion_id for f in findings if f.status == "not_met"]
