"""Review of issue 20: what the worker's ledger append (store.ledger.verified_entry) binds an entry to.

Whoever can reach Temporal can run their own workflow code (a worker polling their own queue) and schedule
``ledger.append`` on careloom's queue with any entries. These tests call the check the activity runs."""

from __future__ import annotations

from datetime import UTC, datetime


from guardrails.approvals import ApprovalDecision
from guardrails.signing import DecisionSigner, generate_signing_key
from store.ledger_entries import LedgerEntry
from workflows.ledger_activity import verified_entry

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SIGNER = DecisionSigner([("k1", generate_signing_key())])
KEYS = SIGNER.public_keys()



def _entry(**fields) -> LedgerEntry:
    base = {"event_id": "wf-1/run-1/3", "workflow_id": "wf-1", "approval_id": "a1-determination.1",
            "event": "approved", "actor": "dr.rivera", "role": "md", "at": NOW, "digest": "a" * 64,
            "policy_id": "p", "run_id": "run-1"}
    return LedgerEntry(**{**base, **fields})


def test_a_rejection_does_not_verify_an_approved_entry() -> None:
    """dr.rivera rejected the item; an entry saying she approved it must not be marked verified."""
    rejection = SIGNER.sign(ApprovalDecision(approval_id="a1-determination.1", digest="a" * 64, decision="reject",
                                             approver="dr.rivera", role="md", reason="not indicated"),
                            "wf-1", "run-1", now=NOW)
    entry = verified_entry(_entry(event="approved"), rejection, workflow_id="wf-1", run_id="run-1", keys=KEYS)
    assert entry.verified is not True


def test_a_proof_of_another_digest_does_not_verify_the_entry() -> None:
    """The MD approved digest a…; an entry claiming she approved digest b… must not be marked verified."""
    approval = SIGNER.sign(ApprovalDecision(approval_id="a1-determination.1", digest="a" * 64, decision="approve",
                                            approver="dr.rivera", role="md"), "wf-1", "run-1", now=NOW)
    entry = verified_entry(_entry(digest="b" * 64), approval, workflow_id="wf-1", run_id="run-1", keys=KEYS)
    assert entry.verified is not True


def test_a_run_cannot_append_entries_for_another_workflow() -> None:
    """A run of wf-attacker appends a `withdrawn` entry for the victim's run: it must be refused or marked."""
    forged = _entry(workflow_id="wf-victim", event_id="wf-victim/r/1", approval_id="run", event="withdrawn",
                    actor="adt:GOOD-HOSPITAL", role=None, digest="", run_id=None)
    entry = verified_entry(forged, None, workflow_id="wf-attacker", run_id="run-9", keys=KEYS)
    assert (False, "appended by another run (wf-attacker run run-9)") == (entry.verified,
                                                                          entry.unverified_reason.split(": ", 1)[-1])


def test_the_decision_behind_an_entry_verifies_it() -> None:
    """The MD's signed approval of digest a… for this run verifies the entry that records it; a sign-off too."""
    approval = SIGNER.sign(ApprovalDecision(approval_id="a1-determination.1", digest="a" * 64, decision="approve",
                                            approver="dr.rivera", role="md"), "wf-1", "run-1", now=NOW)
    assert verified_entry(_entry(), approval, workflow_id="wf-1", run_id="run-1", keys=KEYS).verified is True
    assert verified_entry(_entry(event="signed_off"), approval, workflow_id="wf-1", run_id="run-1",
                          keys=KEYS).verified is True
    # A non-decision entry of the run itself needs no proof and is left as it is.
    requested = _entry(event="requested", actor="system", role=None)
    assert requested == verified_entry(requested, None, workflow_id="wf-1", run_id="run-1", keys=KEYS)
