"""Signed decisions on the real dev server: the API's signer is accepted; forged updates sent with the Temporal
CLI (`temporal workflow update execute`) are refused by the update validator and never reach history."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from guardrails.approvals import ApprovalDecision
from guardrails.policy import DecisionSignatures
from guardrails.signing import DecisionSigner, generate_signing_key
from runtime.temporal_server import temporal_binary
from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.conftest import ALWAYS_ASK, StartRun, wait_for_status
from tests.deciding import ROTATION_KEYS, decide, ledger_entries
from tests.fhir_factory import make_member
from workflows.inbox import DecisionRejected

SIGNER = DecisionSigner(ROTATION_KEYS)  # keys the session's workers trust (tests/deciding.py)
RETIRING = SIGNER.public_keys()[1].model_copy(update={"not_after": datetime.now(UTC) - timedelta(minutes=1)})
SIGNED = ALWAYS_ASK.model_copy(update={"approvals": ALWAYS_ASK.approvals.model_copy(update={
    "decision_signatures": DecisionSignatures(keys=(SIGNER.public_keys()[0], RETIRING))})})


async def cli_update(client: Client, workflow_id: str, update_id: str, payload: dict) -> subprocess.CompletedProcess:
    """The Temporal CLI in a thread: the test's worker shares this event loop and must keep polling."""
    return await asyncio.to_thread(
        subprocess.run,
        [str(temporal_binary()), "workflow", "update", "execute", "--address", client.service_client.config.target_host,
         "--workflow-id", workflow_id, "--name", "decide", "--update-id", update_id,
         "--input", json.dumps(payload)], capture_output=True, text=True, timeout=60)


async def accepted_update_ids(client: Client, workflow_id: str) -> set[str]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return {e.workflow_execution_update_accepted_event_attributes.protocol_instance_id
            for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED}


@pytest.mark.slow
async def test_forged_updates_from_the_temporal_cli_are_refused_before_history(
        client: Client, start_run: StartRun, store, settings) -> None:  # noqa: ANN001
    handle = await start_run(make_member(store), policy=SIGNED)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) >= 2)
    first, second = status.pending_approvals[:2]
    base = ApprovalDecision(approval_id=first.approval_id, digest=first.digest, decision="approve",
                            approver="dr.rivera", role="md")
    run_id = (await handle.describe()).run_id
    good = SIGNER.sign(base, handle.id, run_id)
    other_workflow = SIGNER.sign(base, "outreach-someone-else", run_id)
    other_run = SIGNER.sign(base, handle.id, "a-run-before-a-restart")
    impostor = DecisionSigner([("current", generate_signing_key())]).sign(base, handle.id, run_id)
    retired = DecisionSigner(SIGNER.keys[1:]).sign(base, handle.id, run_id)
    stale = SIGNER.sign(base, handle.id, run_id, now=datetime.now(UTC) - timedelta(minutes=10))
    on_another_item = good.model_copy(update={"approval_id": second.approval_id, "digest": second.digest})
    forged = {
        "unsigned": (base, "unsigned decision"),
        "other-workflow": (other_workflow, "does not match"),
        "other-run": (other_run, "another run of this workflow id"),
        "impostor-key": (impostor, "does not match"),
        "retired-key": (retired, "retired"),
        "stale": (stale, "s old"),
        "another-item": (on_another_item, "does not match"),
        "role-raised": (SIGNER.sign(base.model_copy(update={"role": "care_coordinator"}), handle.id, run_id)
                        .model_copy(update={"role": "md"}), "does not match"),
    }
    for name, (decision, message) in forged.items():
        result = await cli_update(client, handle.id, f"forged-{name}", decision.model_dump(mode="json", exclude_none=True))
        assert 0 != result.returncode, name
        assert message in result.stdout + result.stderr, (name, result.stdout, result.stderr)
    assert set() == await accepted_update_ids(client, handle.id)
    # The same decision, signed by the API's signer, is accepted; the ledger records the key.
    result = await decide(client, handle.id, base, signer=SIGNER)
    assert "approved" == result.outcome
    accepted = await accepted_update_ids(client, handle.id)
    assert 1 == len(accepted) and not any(u.startswith("forged-") for u in accepted)
    await wait_for_status(handle, lambda s: first.approval_id not in {p.approval_id for p in s.pending_approvals})
    entries = [e for e in await ledger_entries(DecisionLedger(configured_database(settings)), handle.id, "approved")
               if e.event == "approved"]
    assert [("current", "dr.rivera")] == [(e.key_id, e.actor) for e in entries]


async def test_an_unsigned_decision_through_the_client_is_refused_and_a_signed_one_repeats_idempotently(
        client: Client, start_run: StartRun, store) -> None:  # noqa: ANN001
    handle = await start_run(make_member(store), policy=SIGNED)
    status = await wait_for_status(handle, lambda s: len(s.pending_approvals) >= 1)
    item = status.pending_approvals[0]
    decision = ApprovalDecision(approval_id=item.approval_id, digest=item.digest, decision="approve",
                                approver="dr.rivera", role="md")
    with pytest.raises(DecisionRejected) as caught:
        await decide(client, handle.id, decision)
    assert "forbidden" == caught.value.code
    first = await decide(client, handle.id, decision, signer=SIGNER)
    again = await decide(client, handle.id, decision, signer=SIGNER)  # signed anew: the same decision
    assert first == again


async def test_during_a_rotation_the_signer_uses_the_key_each_run_knows(
        client: Client, start_run: StartRun, store, settings) -> None:  # noqa: ANN001
    """A run started before the rotation trusts only the old key; one started after trusts both: the API,
    holding the new key first and the old one second, signs each with a key it accepts."""
    old_only = ALWAYS_ASK.model_copy(update={"approvals": ALWAYS_ASK.approvals.model_copy(update={
        "decision_signatures": DecisionSignatures(keys=(SIGNER.public_keys()[1],))})})
    both = ALWAYS_ASK.model_copy(update={"approvals": ALWAYS_ASK.approvals.model_copy(update={
        "decision_signatures": DecisionSignatures(keys=SIGNER.public_keys())})})
    used = []
    for policy in (old_only, both):
        handle = await start_run(make_member(store), policy=policy)
        item = (await wait_for_status(handle, lambda s: bool(s.pending_approvals))).pending_approvals[0]
        decision = ApprovalDecision(approval_id=item.approval_id, digest=item.digest, decision="approve",
                                    approver="dr.rivera", role="md")
        assert "approved" == (await decide(client, handle.id, decision, signer=SIGNER)).outcome
        await wait_for_status(handle, lambda s: item.approval_id not in {p.approval_id for p in s.pending_approvals})
        entries = await ledger_entries(DecisionLedger(configured_database(settings)), handle.id, "approved")
        used += [e.key_id for e in entries if e.event == "approved"]
    assert ["previous", "current"] == used
