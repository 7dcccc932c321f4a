"""Issue 20's attacks by someone who can reach Temporal but holds no careloom key, on the real dev server.

Each goes through the Temporal CLI (`temporal workflow terminate|start|update execute`), exactly as an
attacker with frontend access would: forged trust in a restarted run's input, a sign-off replayed from the
first run into a restarted one, and the ledger entries of both runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from guardrails.approvals import ApprovalDecision
from guardrails.configured import prior_auth_policy
from guardrails.signing import DecisionSigner, generate_signing_key, public_key_of
from history.events import read_run
from history.ledger_check import check_run, withdrawn_entries_owed
from runtime.temporal_server import temporal_binary
from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.cli import CARELOOM, ROOT
from tests.databases import session_env
from tests.deciding import decide, ledger_entries
from tests.pas_factory import MRI_NOTES_AGAINST, MRI_NOTES_MET, make_pas_request
from tests.prior_auth_runs import decision, pending
from workflows.prior_auth import PriorAuthWorkflow



pytestmark = pytest.mark.slow


async def temporal(client: Client, *args: str) -> subprocess.CompletedProcess:
    """The Temporal CLI in a thread (the test's worker shares this event loop and must keep polling)."""
    return await asyncio.to_thread(
        subprocess.run, [str(temporal_binary()), *args, "--address", client.service_client.config.target_host],
        capture_output=True, text=True, timeout=60)


async def start_input(handle: WorkflowHandle) -> dict:
    """The run's start input as JSON, read from its history as `temporal workflow show -o json` shows it."""
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    return json.loads(started.input.payloads[0].data)


@pytest.fixture(autouse=True)
async def _close_restarted_runs(client: Client) -> AsyncIterator[None]:
    """Runs started here through the CLI are not the submit fixture's: terminate whatever still runs under the
    ids restarted (a parked run without a worker would hang other tests' inbox queries)."""
    yield
    for workflow_id in RESTARTED:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id).terminate("test finished")
    RESTARTED.clear()


RESTARTED: list[str] = []


async def restart(client: Client, workflow_id: str, task_queue: str, payload: dict) -> WorkflowHandle:
    """Terminate the run and start it again under the same workflow id with ``payload``, through the CLI."""
    RESTARTED.append(workflow_id)
    done = await temporal(client, "workflow", "terminate", "--workflow-id", workflow_id, "--reason", "attacker")
    assert 0 == done.returncode, done.stderr
    started = await temporal(client, "workflow", "start", "--type", "PriorAuthWorkflow", "--task-queue", task_queue,
                             "--workflow-id", workflow_id, "--input", json.dumps(payload))
    assert 0 == started.returncode, started.stderr
    return client.get_workflow_handle_for(PriorAuthWorkflow.run, workflow_id)


async def cli_decide(client: Client, workflow_id: str, signed: ApprovalDecision) -> subprocess.CompletedProcess:
    return await temporal(client, "workflow", "update", "execute", "--workflow-id", workflow_id, "--name", "decide",
                          "--input", json.dumps(signed.model_dump(mode="json", exclude_none=True)))


async def test_a_restart_with_the_attackers_own_keys_issues_no_denial(
        client: Client, submit, store, settings, task_queue: str) -> None:  # noqa: ANN001
    """Own public key under the legitimate key id in a restarted run's input, two updates signed with it as
    dr.rivera/md and rn.kim/rn: the run accepts them (its input trusts the key), but the worker, which trusts
    only its own keys, writes no ClaimResponse; the refusal is named, a person gets a Task, and `ledger verify`
    reports the unverified decisions."""
    request = make_pas_request(store, notes=MRI_NOTES_AGAINST)
    handle = await submit(request, policy=prior_auth_policy(settings))
    item = await pending(handle)
    assert "deny" == item.arguments.outcome

    payload = await start_input(handle)
    attacker_private = generate_signing_key()
    keys = payload["policy"]["approvals"]["decision_signatures"]["keys"]
    for legitimate in keys:  # the attacker's public key under every legitimate key id
        legitimate["public_key"] = public_key_of(attacker_private)
    attacker = DecisionSigner([(keys[0]["key_id"], attacker_private)])
    forged_run = await restart(client, handle.id, task_queue, payload)
    item = await pending(forged_run)
    run_id = (await forged_run.describe()).run_id

    md = attacker.sign(decision(item, approver="dr.rivera", role="md"), handle.id, run_id)
    assert 0 == (await cli_decide(client, handle.id, md)).returncode
    waiting = await pending(forged_run, required_role="rn")
    rn = attacker.sign(decision(waiting, approver="rn.kim", role="rn"), handle.id, run_id)
    assert 0 == (await cli_decide(client, handle.id, rn)).returncode
    result = await forged_run.result()

    assert (None, "needs_attention") == (result.claim_response, result.status)
    [determination] = [a for a in result.actions if a.tool == "issue_determination"]
    assert "failed" == determination.status
    assert "ApprovalNotVerified" in determination.reason and "does not match" in determination.reason
    assert [] == store.find_for_member("ClaimResponse", request.member_id)
    tasks = [t["code"]["text"] for t in store.find_for_member("Task", request.member_id)]
    assert ["run-failure-review"] == tasks
    entries = [e for e in DecisionLedger(configured_database(settings)).entries(handle.id) if e.run_id == run_id]
    assert [("signed_off", False), ("approved", False)] == [
        (e.event, e.verified) for e in entries if e.event in ("signed_off", "approved")]
    _, problems = DecisionLedger(configured_database(settings)).verify()
    assert 2 == len([p for p in problems if handle.id in str(p) and "was not verified" in str(p)])


async def test_an_unsigned_decision_is_refused_even_when_the_run_trusts_no_key(
        client: Client, submit, store, settings, task_queue: str) -> None:  # noqa: ANN001
    """A run restarted with ``decision_signatures: null``: an unsigned decision is refused before history."""
    handle = await submit(make_pas_request(store, notes=MRI_NOTES_AGAINST), policy=prior_auth_policy(settings))
    await pending(handle)
    payload = await start_input(handle)
    payload["policy"]["approvals"]["decision_signatures"] = None
    restarted = await restart(client, handle.id, task_queue, payload)
    item = await pending(restarted)
    done = await cli_decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    assert 0 != done.returncode
    assert "unsigned decision" in done.stdout + done.stderr
    history = await restarted.fetch_history()
    assert not any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED for e in history.events)


async def test_a_sign_off_is_not_replayed_into_a_restarted_run_and_each_run_keeps_its_ledger(
        client: Client, submit, store, settings, task_queue: str) -> None:  # noqa: ANN001
    """An MD sign-off taken from run 1's history is refused by run 2 of the same workflow id (the signature binds
    the run); both runs' ledger entries are kept, and the cross-check wants a withdrawn entry for run 1 until
    `ledger reconcile` appends it."""
    handle = await submit(make_pas_request(store, notes=MRI_NOTES_AGAINST), policy=prior_auth_policy(settings))
    item = await pending(handle)
    first_run = (await handle.describe()).run_id
    assert "awaiting_second_signoff" == (await decide(client, handle.id,
                                                      decision(item, approver="dr.rivera", role="md"))).outcome
    [signed] = [d.decision for d in read_run(await handle.fetch_history()).decisions]
    assert signed.signature is not None

    restarted = await restart(client, handle.id, task_queue, await start_input(handle))
    again = await pending(restarted)
    assert (item.approval_id, item.digest) == (again.approval_id, again.digest)  # the same item, as in the attack
    done = await cli_decide(client, handle.id, signed)
    assert 0 != done.returncode
    assert "another run of this workflow id" in done.stdout + done.stderr
    second_run = (await restarted.describe()).run_id

    ledger = DecisionLedger(configured_database(settings))
    runs = {(e.run_id, e.event) for e in ledger.entries(handle.id)}
    assert {(first_run, "requested"), (first_run, "signed_off"), (second_run, "requested")} <= runs
    first = read_run(await client.get_workflow_handle(handle.id, run_id=first_run).fetch_history())
    problems = check_run(first, ledger.entries()).problems
    assert any("terminated" in p and "no withdrawn entry" in p for p in problems)
    owed = withdrawn_entries_owed(first, ledger.entries())
    assert 2 == len(ledger.append_new(owed))  # the open item and the run
    assert [] == check_run(first, ledger.entries()).problems
    assert [] == withdrawn_entries_owed(first, ledger.entries())


async def test_ledger_verify_fails_when_a_runs_entries_were_dropped(
        client: Client, submit, store, settings, tmp_path) -> None:  # noqa: ANN001
    """A decision in the history with no ledger row is a failure of the cross-check (the chain alone is intact)."""
    handle = await submit(make_pas_request(store, notes=MRI_NOTES_AGAINST), policy=prior_auth_policy(settings))
    item = await pending(handle)
    await decide(client, handle.id, decision(item, approver="dr.rivera", role="md"))
    await pending(handle, required_role="rn")
    ledger = DecisionLedger(configured_database(settings))
    await ledger_entries(ledger, handle.id, "signed_off")
    record = read_run(await handle.fetch_history())
    kept = [e for e in ledger.entries() if not (e.workflow_id == handle.id and e.event == "signed_off")]
    problems = check_run(record, kept).problems
    assert any("is in the history but not in the ledger" in p for p in problems)
    assert any("dr.rivera's decision" in p for p in problems)
    assert [] == check_run(record, ledger.entries()).problems

    # The command, on a records database that lacks the run's entries (here: a new one), fails and names them.
    done = await asyncio.to_thread(subprocess.run, [*CARELOOM, "ledger", "verify", "--workflow", handle.id], env={
        **os.environ, **session_env(settings), "CARELOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "TEMPORAL_ADDRESS": client.service_client.config.target_host}, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert 1 == done.returncode, done.stdout + done.stderr
    assert "is in the history but not in the ledger" in done.stdout + done.stderr
    ok = await asyncio.to_thread(subprocess.run, [*CARELOOM, "ledger", "verify", "--workflow", handle.id], env={
        **os.environ, **session_env(settings), "TEMPORAL_ADDRESS": client.service_client.config.target_host},
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    # On the session's database the run checks out (other tests of the session may have left unverified
    # decision entries there on purpose: the chain check reports those, not this run).
    assert "1 run histories" in ok.stdout + ok.stderr
    assert handle.id not in ok.stdout + ok.stderr


async def test_a_run_started_again_under_the_same_id_writes_its_own_resources(
        client: Client, submit, store, task_queue: str) -> None:  # noqa: ANN001
    """Idempotency keys name the run: a second run of a workflow id never reports run 1's ClaimResponse as its own
    write (before: created=false and run 1's resource, whatever run 2 decided)."""
    handle = await submit(make_pas_request(store, notes=MRI_NOTES_MET))
    first = await handle.result()
    payload = await start_input(handle)
    RESTARTED.append(handle.id)
    started = await temporal(client, "workflow", "start", "--type", "PriorAuthWorkflow", "--task-queue", task_queue,
                             "--workflow-id", handle.id, "--input", json.dumps(payload))
    assert 0 == started.returncode, started.stderr
    second = await client.get_workflow_handle_for(PriorAuthWorkflow.run, handle.id).result()
    assert first.claim_response and second.claim_response
    assert first.claim_response != second.claim_response
