"""Tests for tools.evidence: criteria met from non-negated phrases in the notes, cited by offset only."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path

import pytest

from tests.pas_factory import (
    HOME_HEALTH_NOTES_MET,
    MRI_NOTES_AGAINST,
    MRI_NOTES_MET,
    MRI_NOTES_MISSING_THERAPY,
    SNF_NOTES_MET,
)
from tools.criteria import Criterion, ServicePolicy, load_criteria
from tools.evidence import Citation, NoteReading, extract_evidence, read_evidence, unmet_criteria
from tools.pas_models import Note

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data" / "prior_auth"


def _policy(*terms: str, min_citations: int = 1) -> ServicePolicy:
    return ServicePolicy(
        policy_id="test", title="test policy", category="advanced-imaging", codes=["00000"],
        auto_approve_when_met=False,
        criteria=[Criterion(criterion_id="c1", description="test criterion", evidence_terms=list(terms),
                            min_citations=min_citations)])


def _one(text: str, *terms: str, min_citations: int = 1):
    return extract_evidence([Note(document_id="doc-1", text=text)], _policy(*terms, min_citations=min_citations))[0]


def _statuses(notes, code):
    findings = extract_evidence([Note(document_id=f"doc-{n}", text=t) for n, t in enumerate(notes)],
                                load_criteria().policy_for(code))
    return {f.criterion_id: f.status for f in findings}


def test_mri_notes_meeting_the_policy_meet_every_criterion():
    """The factory's complete MRI note meets all three lumbar MRI criteria."""
    assert {"conservative-therapy-6-weeks": "met", "neurological-deficit-or-failed-therapy": "met",
            "neurological-examination": "met"} == _statuses(MRI_NOTES_MET, "72148")


def test_undocumented_therapy_duration_leaves_one_criterion_unmet():
    """Therapy 'in the past' without a duration does not meet the 6-week criterion."""
    assert ["conservative-therapy-6-weeks"] == unmet_criteria(extract_evidence(
        [Note(document_id="d", text=MRI_NOTES_MISSING_THERAPY[0])], load_criteria().policy_for("72148")))


def test_denied_red_flags_are_contrary_evidence():
    """Denied red flags leave the deficit criterion unmet, with the negated mentions as contrary evidence."""
    finding = extract_evidence([Note(document_id="d", text=MRI_NOTES_AGAINST[0])],
                               load_criteria().policy_for("72148"))[1]

    assert ("not_met", [], ["radiculopathy", "bowel or bladder dysfunction", "saddle anesthesia"]) == (
        finding.status, finding.citations, [c.term for c in finding.contrary])


def test_home_health_and_snf_notes_meet_their_policies():
    """The factory's home health and SNF notes meet every criterion of their policies."""
    assert ({"met"}, {"met"}) == (set(_statuses(HOME_HEALTH_NOTES_MET, "G0299").values()),
                                  set(_statuses(SNF_NOTES_MET, "0022").values()))


def test_citation_offsets_point_at_the_phrase():
    """A citation's offsets slice the note to the phrase; its term is the criteria file's phrase."""
    text = "Exam today. Left FOOT DROP noted."
    finding = _one(text, "foot drop")

    assert ([Citation(document_id="doc-1", start=17, end=26, term="foot drop")], "FOOT DROP") == (
        finding.citations, text[17:26])


def test_matching_is_case_insensitive():
    """Upper, lower and mixed case all match."""
    assert "met" == _one("HOMEBOUND since March.", "homebound").status


def test_matching_respects_word_boundaries():
    """A phrase inside a longer word is not a match."""
    assert "not_met" == _one("History of PTSD; aptitude good.", "pt").status


def test_hyphens_and_spaces_are_interchangeable():
    """'face to face encounter' in a note matches the phrase 'face-to-face encounter'."""
    assert "met" == _one("Face to face encounter done on 11/18.", "face-to-face encounter").status


def test_a_phrase_may_span_a_line_break():
    """A phrase broken across lines still matches."""
    assert "met" == _one("Completed 6 weeks of\nphysical therapy.", "6 weeks of physical therapy").status


@pytest.mark.parametrize("cue", ["no", "not", "denies", "without", "negative for", "never"])
def test_negation_cues_negate_the_phrase(cue):
    """A negation cue just before the phrase makes it contrary evidence, not a citation."""
    finding = _one(f"Patient {cue} radiculopathy.", "radiculopathy")

    assert ("not_met", [], ["radiculopathy"]) == (finding.status, finding.citations,
                                                  [c.term for c in finding.contrary])


def test_a_contraction_negates():
    """"hasn't had" negates what follows."""
    assert "not_met" == _one("She hasn't had radiculopathy.", "radiculopathy").status


def test_negation_does_not_cross_a_sentence():
    """A negation in the previous sentence does not negate the phrase."""
    assert "met" == _one("No fever. Foot drop on the left.", "foot drop").status


def test_negation_does_not_cross_but():
    """'but' starts a new clause: 'no fever but has foot drop' documents foot drop."""
    assert "met" == _one("No fever but has foot drop.", "foot drop").status


def test_negation_more_than_five_words_back_does_not_count():
    """A cue six words before the phrase does not negate it."""
    assert "met" == _one("No history of trauma and she has foot drop.", "foot drop").status


def test_no_improvement_is_not_a_negation():
    """'no improvement despite 6 weeks of physical therapy' documents the therapy."""
    assert "met" == _one("No improvement despite 6 weeks of physical therapy.", "6 weeks of physical therapy").status


def test_min_citations_counts_mentions():
    """A criterion needing two citations is not met by one mention and met by two."""
    assert ("not_met", "met") == (_one("Wound care daily.", "wound care", min_citations=2).status,
                                  _one("Wound care daily. Wound care teaching.", "wound care", min_citations=2).status)


def test_overlapping_phrases_count_once_as_the_longest():
    """Two phrases matching the same words give one citation, for the longer phrase."""
    finding = _one("Completed 6 weeks of physical therapy.", "physical therapy", "6 weeks of physical therapy")

    assert ["6 weeks of physical therapy"] == [c.term for c in finding.citations]


def test_no_notes_meet_nothing():
    """Without notes every criterion is not met, in the policy's order."""
    findings = extract_evidence([], load_criteria().policy_for("0022"))

    assert ([("qualifying-inpatient-stay", "not_met"), ("daily-skilled-need", "not_met"),
             ("inpatient-setting-required", "not_met")]) == [(f.criterion_id, f.status) for f in findings]


def test_findings_do_not_depend_on_note_order():
    """The same notes in another order give identical findings, citations sorted by document and offset."""
    notes = [Note(document_id="b", text="Homebound. Homebound."), Note(document_id="a", text="Is homebound.")]
    policy = load_criteria().policy_for("G0299")
    forward, backward = extract_evidence(notes, policy), extract_evidence(notes[::-1], policy)

    assert (forward, [("a", 3), ("b", 0), ("b", 11)]) == (
        backward, [(c.document_id, c.start) for c in forward[0].citations])


def test_findings_carry_no_note_text():
    """Serialized findings hold ids, offsets and criteria phrases, never words of the note."""
    findings = extract_evidence([Note(document_id="d", text=MRI_NOTES_MET[0])], load_criteria().policy_for("72148"))
    serialized = json.dumps([f.model_dump(mode="json") for f in findings])

    assert (False, False, False) == ("NSAIDs" in serialized, "dorsiflexion" in serialized, "L5" in serialized)


_SAMPLE_EXPECTED = {
    "mri-all-criteria-met": [],
    "mri-missing-documentation": ["conservative-therapy-6-weeks"],
    "mri-evidence-against": ["conservative-therapy-6-weeks", "neurological-deficit-or-failed-therapy"],
    "home-health-expedited": [],
    "snf-admission": [],
}


@pytest.mark.parametrize("name", sorted(_SAMPLE_EXPECTED))
def test_shipped_samples_show_what_their_readme_says(name):
    """Each sample request's notes meet the criteria sample_data/prior_auth/README.md says they meet."""
    bundle = json.loads((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    notes = [Note(document_id=r["id"], text=base64.b64decode(r["content"][0]["attachment"]["data"]).decode())
             for r in (e["resource"] for e in bundle["entry"]) if r["resourceType"] == "DocumentReference"]
    claim = bundle["entry"][0]["resource"]
    policy = load_criteria().policy_for(claim["item"][0]["productOrService"]["coding"][0]["code"])

    assert _SAMPLE_EXPECTED[name] == unmet_criteria(extract_evidence(notes, policy))


def test_a_cue_before_a_long_run_of_spaces_still_negates():
    """The negation window widens past blank space: "No" then 500 spaces, then the phrase, is still negated."""
    finding = _one("No" + " " * 500 + "radiculopathy.", "radiculopathy")

    assert ("not_met", ["radiculopathy"]) == (finding.status, [c.term for c in finding.contrary])


def test_a_cue_thousands_of_words_back_in_one_sentence_does_not_negate():
    """Only the five words before a phrase count, however long its sentence: "No" 20,000 words back does not."""
    finding = _one("No " + "word " * 20_000 + "foot drop.", "foot drop")

    assert ("met", 100_003) == (finding.status, finding.citations[0].start)


def test_a_phrase_inside_a_longer_first_word_is_not_a_match():
    """A phrase's first word inside a longer word ("L5/S1" for "L5") is found only as its own phrase."""
    finding = _one("Disc at L5/S1 and at L5.", "L5", "L5/S1")

    assert [("L5/S1", 8, 13), ("L5", 21, 23)] == [(c.term, c.start, c.end) for c in finding.citations]


def _ticking() -> itertools.count:
    """A clock that advances one second each time it is read: budgets run out at a known mention."""
    return itertools.count()


def test_a_note_over_its_time_budget_is_read_up_to_there_and_reported():
    """A note whose budget runs out keeps what was found before, and says how far it was read."""
    text = "Foot drop. Foot drop. Foot drop. Foot drop."
    clock = _ticking()
    reading = read_evidence([Note(document_id="d", text=text)], [_policy("foot drop")], note_budget_s=2.5,
                            review_budget_s=None, clock=clock.__next__)

    assert ([NoteReading(document_id="d", length=len(text), read_until=22)], [0, 11]) == (
        reading.incomplete, [c.start for c in reading.findings["test"][0].citations])


def test_notes_after_the_review_budget_are_reported_unread():
    """When the request's budget runs out, the next note is reported read only up to its first phrase."""
    notes = [Note(document_id="a", text="Foot drop. Foot drop."), Note(document_id="b", text="Left foot drop.")]
    clock = _ticking()
    reading = read_evidence(notes, [_policy("foot drop")], note_budget_s=None, review_budget_s=2.5,
                            clock=clock.__next__)

    assert ([True, False], [NoteReading(document_id="b", length=15, read_until=5)]) == (
        [n.complete for n in reading.notes], reading.incomplete)


def test_a_note_within_its_budget_is_read_to_the_end():
    """With the default budgets, a note is read completely and every policy gets its findings."""
    criteria = load_criteria()
    policies = [criteria.policy_for("72148"), criteria.policy_for("G0299")]
    reading = read_evidence([Note(document_id="d", text=MRI_NOTES_MET[0])], policies)

    assert ([], ["home-health", "lumbar-spine-mri"], set()) == (
        reading.incomplete, sorted(reading.findings),
        set(unmet_criteria(reading.findings["lumbar-spine-mri"])))


def test_each_policy_gets_the_findings_it_would_get_alone():
    """Reading the notes once for several policies gives each the findings extract_evidence gives it alone."""
    criteria = load_criteria()
    notes = [Note(document_id=f"d{n}", text=t) for n, t in enumerate(
        (*MRI_NOTES_AGAINST, *HOME_HEALTH_NOTES_MET, *SNF_NOTES_MET))]
    together = read_evidence(notes, criteria.services).findings

    assert {p.policy_id: extract_evidence(notes, p) for p in criteria.services} == together
