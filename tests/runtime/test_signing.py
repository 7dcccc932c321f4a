"""Decision signatures by their definition: what they bind, freshness, retired and unknown keys, bad config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guardrails.approvals import ApprovalDecision
from guardrails.signing import (
    DecisionSigner,
    generate_signing_key,
    parse_public_keys,
    parse_signing_keys,
    public_key_of,
    verify_approval,
    verify_decision,
)
from runtime.errors import ConfigurationError, DecisionRefused
from tools.care_plan import DraftCarePlanArgs, GoalSpec

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
AGE = timedelta(seconds=300)
SIGNER = DecisionSigner([("k2", generate_signing_key()), ("k1", generate_signing_key())])
KEYS = SIGNER.public_keys()
DECISION = ApprovalDecision(approval_id="a3-care-plan.1", digest="d" * 64, decision="approve", approver="rn.kim",
                            role="rn")


def signed(decision: ApprovalDecision = DECISION, workflow_id: str = "wf-1", at: datetime = NOW,
           run_id: str = "run-1") -> ApprovalDecision:
    return SIGNER.sign(decision, workflow_id, run_id, now=at)


def refused(decision: ApprovalDecision, *, workflow_id: str = "wf-1", run_id: str = "run-1", keys=KEYS,
            now: datetime = NOW) -> str:
    with pytest.raises(DecisionRefused) as caught:
        verify_decision(decision, workflow_id, run_id, keys, now=now, max_age=AGE)
    assert "forbidden" == caught.value.code
    return str(caught.value)


def test_a_signed_decision_verifies_and_names_its_key() -> None:
    assert "k2" == verify_decision(signed(), "wf-1", "run-1", KEYS, now=NOW + timedelta(seconds=5), max_age=AGE)


@pytest.mark.parametrize("change", [
    {"approver": "dr.rivera"}, {"role": "md"}, {"digest": "e" * 64}, {"decision": "reassign", "queue": "x"},
    {"approval_id": "a2-check-in.1"}, {"reason": "added later"}, {"bulk_tool": "create_task"},
])
def test_changing_any_bound_field_after_signing_breaks_the_signature(change: dict) -> None:
    forged = signed().model_copy(update=change)
    assert "does not match its content" in refused(forged)


def test_an_edit_binds_its_new_arguments() -> None:
    args = DraftCarePlanArgs(title="Plan", goals=[GoalSpec(description="Visit within 7 days", due_in_days=7)])
    edit = signed(DECISION.model_copy(update={"decision": "edit", "arguments": args}))
    verify_decision(edit, "wf-1", "run-1", KEYS, now=NOW, max_age=AGE)
    other = args.model_copy(update={"title": "Another plan"})
    assert "does not match" in refused(edit.model_copy(update={"arguments": other}))


def test_a_signature_does_not_move_to_another_run() -> None:
    """Another workflow id, or another run of the same workflow id (a restart), does not verify."""
    assert "does not match" in refused(signed(), workflow_id="wf-2")
    assert "another run of this workflow id" in refused(signed(), run_id="run-2")


def test_unsigned_stale_future_unknown_and_retired_are_refused() -> None:
    assert "unsigned decision" in refused(DECISION)
    assert "s old" in refused(signed(at=NOW - timedelta(seconds=301)))
    verify_decision(signed(at=NOW - timedelta(seconds=299)), "wf-1", "run-1", KEYS, now=NOW, max_age=AGE)
    assert "in the future" in refused(signed(at=NOW + timedelta(minutes=2)))
    assert "unknown key 'k2'" in refused(signed(), keys=KEYS[1:])
    retired = (KEYS[0].model_copy(update={"not_after": NOW - timedelta(hours=1)}), KEYS[1])
    assert "retired" in refused(signed(), keys=retired)


def test_a_signature_from_another_key_with_the_same_id_is_refused() -> None:
    impostor = DecisionSigner([("k2", generate_signing_key())]).sign(DECISION, "wf-1", "run-1", now=NOW)
    assert "does not match" in refused(impostor)
    garbage = signed().model_copy(update={"signature": signed().signature.model_copy(update={"value": "!!"})})
    assert "does not match" in refused(garbage)


def test_key_settings_are_checked_with_the_fix_named() -> None:
    private = generate_signing_key()
    assert [("a", private)] == parse_signing_keys(f" a={private} ")
    for bad, message in ((f"{private}", "is not KEY_ID=BASE64"), ("a=not base64!", "is not base64"),
                         ("a=AAAA", "is 3 bytes"), ("", "is empty")):
        with pytest.raises(ConfigurationError, match=message):
            parse_signing_keys(bad)
    public = public_key_of(private)
    (key, old) = parse_public_keys(f"new={public},old={public}@2026-12-31T00:00:00Z")
    assert (None, datetime(2026, 12, 31, tzinfo=UTC)) == (key.not_after, old.not_after)
    with pytest.raises(ConfigurationError, match="UTC offset"):
        parse_public_keys(f"old={public}@2026-12-31T00:00:00")
    with pytest.raises(ConfigurationError, match="not a 32-byte"):
        parse_public_keys("x=AAAA")


def test_the_development_key_file_is_made_once_and_private(tmp_path) -> None:  # noqa: ANN001
    first = DecisionSigner.from_file(tmp_path / "signing-keys")
    again = DecisionSigner.from_file(tmp_path / "signing-keys")
    assert first.public_keys() == again.public_keys()
    assert 0o600 == (tmp_path / "signing-keys").stat().st_mode & 0o777


def test_duplicate_key_ids_and_naive_retirement_times_are_refused() -> None:
    from guardrails.policy import DecisionKey, DecisionSignatures

    one, two = generate_signing_key(), generate_signing_key()
    with pytest.raises(ConfigurationError, match="listed twice"):
        parse_signing_keys(f"k1={one},k1={two}")
    with pytest.raises(ConfigurationError, match="listed twice"):
        parse_public_keys(f"k1={public_key_of(one)},k1={public_key_of(two)}")
    with pytest.raises(ValueError, match="UTC offset"):
        DecisionKey(key_id="k", public_key=public_key_of(one), not_after=datetime(2026, 12, 31))
    with pytest.raises(ValueError, match="distinct"):
        DecisionSignatures(keys=(DecisionKey(key_id="k", public_key=public_key_of(one)),
                                 DecisionKey(key_id="k", public_key=public_key_of(two))))


# --- the worker's check before it writes (verify_approval) ----------------------------------------------------

def _approval(arguments_digest: str = "d" * 64, *decisions: ApprovalDecision, effect: str = "none",
              approved_by: str | None = "rn.kim", keys=KEYS, run_id: str = "run-1") -> str | None:
    return verify_approval("a3-care-plan.1", list(decisions), arguments_digest=arguments_digest,
                           effect=effect, approved_by=approved_by, workflow_id="wf-1", run_id=run_id, keys=keys)


def _refused_approval(*args: object, **kwargs: object) -> str:
    with pytest.raises(DecisionRefused) as caught:
        _approval(*args, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


MD = DECISION.model_copy(update={"approver": "dr.rivera", "role": "md"})


def test_the_worker_accepts_a_verified_approval_and_names_its_approvers() -> None:
    assert "rn.kim" == _approval("d" * 64, signed())
    assert "dr.rivera, rn.kim" == _approval("d" * 64, signed(MD), signed(), effect="denies")
    assert _approval("d" * 64, approved_by=None) is None  # automatic, not adverse: no human needed


def test_the_worker_refuses_what_the_run_alone_vouches_for() -> None:
    """Forged trust in the run's input does not help: the worker checks with its own keys and its own run."""
    attacker = DecisionSigner([("k2", generate_signing_key())])  # the legitimate key id, the attacker's key
    forged = [attacker.sign(MD, "wf-1", "run-1", now=NOW), attacker.sign(DECISION, "wf-1", "run-1", now=NOW)]
    assert "does not match" in _refused_approval("d" * 64, *forged, effect="denies")
    assert "another run" in _refused_approval("d" * 64, signed(MD), signed(), effect="denies", run_id="run-2")
    assert "unsigned" in _refused_approval("d" * 64, MD, DECISION, effect="denies")
    assert "signed MD approval" in _refused_approval(approved_by=None, effect="denies")
    assert "carries no signed decision" in _refused_approval(approved_by="dr.rivera")
    assert "the action to write is" in _refused_approval("e" * 64, signed())
    assert "an MD and a second" in _refused_approval("d" * 64, signed(MD), effect="denies")
    two_rns = [signed(), signed(DECISION.model_copy(update={"approver": "rn.lee"}))]
    assert "needs an MD" in _refused_approval("d" * 64, *two_rns, effect="reduces")
    assert "needs an MD" in _refused_approval("d" * 64, signed(), effect="delays")
    assert "dr.rivera" == _approval("d" * 64, signed(MD), effect="delays")  # a pend: one MD
    assert "signed twice" in _refused_approval("d" * 64, signed(MD), signed(MD), effect="denies")
    reject = signed(DECISION.model_copy(update={"decision": "reject", "reason": "no"}))
    assert "does not approve" in _refused_approval("d" * 64, reject)
    assert "holds no decision keys" in _refused_approval("d" * 64, signed(), keys=())
