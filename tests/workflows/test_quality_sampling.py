"""Quality sampling on the real dev server: a share of automatic executions reaches the review queue (the ledger),
through the shared runtime of both programs, and the action itself is never held."""

from __future__ import annotations

from guardrails.approvals import ApprovalDecision
from guardrails.configured import outreach_policy
from guardrails.configured import prior_auth_policy
from guardrails.policy import GuardrailPolicy
from guardrails.prior_auth_policy import PriorAuthPolicy
from history.audit import ledger_mismatches
from history.events import read_run
from runtime.metrics import QUALITY_SAMPLED
from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.conftest import OPEN_WINDOW, StartRun, wait_for_status
from tests.deciding import chain_problems, decide
from tests.fhir_factory import HIGH_RISK, make_member
from tests.pas_factory import make_pas_request
from workflows.approvals import quality_sample_fraction, quality_sampled


def sampling(rate: float, policy: GuardrailPolicy = OPEN_WINDOW) -> GuardrailPolicy:
    return policy.model_copy(update={"approvals": policy.approvals.model_copy(update={"quality_sample_rate": rate})})


def sampled_counter(program: str, tool: str) -> float:
    return QUALITY_SAMPLED.labels(program, tool)._value.get()  # noqa: SLF001 - the client's own reader


def test_selection_is_a_stable_hash_of_workflow_and_action() -> None:
    """The same workflow and action are always picked the same way; rate 0 picks none, rate 1 picks all."""
    ids = [(f"outreach-m{n}-e{n}", "a1-tcm-task") for n in range(400)]
    fractions = [quality_sample_fraction(w, a) for w, a in ids]
    assert fractions == [quality_sample_fraction(w, a) for w, a in ids]
    assert all(0.0 <= f < 1.0 for f in fractions)
    assert (0, 400) == (sum(quality_sampled(w, a, 0.0) for w, a in ids),
                        sum(quality_sampled(w, a, 1.0) for w, a in ids))
    assert 0.03 < sum(quality_sampled(w, a, 0.1) for w, a in ids) / 400 < 0.17


async def test_rate_one_samples_every_automatic_execution_and_no_approved_one(start_run: StartRun, store, client,
                                                                           settings) -> None:
    """High risk at rate 1.0: the TCM task and the SMS ran on their own and are sampled; the care plan an RN
    approved is not. Every action still executes; every entry names its tool; history and ledger agree."""
    before = sampled_counter("post-discharge-outreach", "create_task")
    member = make_member(store, **HIGH_RISK)
    handle = await start_run(member, policy=sampling(1.0))
    status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval")
    [item] = status.pending_approvals
    assert "a3-care-plan" == item.action_id
    await decide(client, handle.id, ApprovalDecision(approval_id=item.approval_id, digest=item.digest,
                                                     decision="approve", approver="rn.kim", role="rn"))
    result = await handle.result()

    assert {"a1-tcm-task": "executed", "a2-check-in": "executed", "a3-care-plan": "executed"} == {
        a.action_id: a.status for a in result.actions}
    ledger = DecisionLedger(configured_database(settings))
    entries = ledger.entries(handle.id)
    sampled = [(e.approval_id, e.tool, e.queue, e.actor) for e in entries if e.event == "sampled"]
    assert [("a1-tcm-task", "create_task", "quality-review", "system"),
            ("a2-check-in", "send_outreach", "quality-review", "system")] == sampled
    digests = {a.action_id: a.digest for a in result.actions}
    assert all(e.digest == digests[e.approval_id] for e in entries if e.event == "sampled")
    assert {("requested", "draft_care_plan"), ("approved", "draft_care_plan")} <= {
        (e.event, e.tool) for e in entries}
    assert all(e.tool is not None for e in entries)
    assert 1 == sampled_counter("post-discharge-outreach", "create_task") - before
    record = read_run(await handle.fetch_history())
    assert [] == ledger_mismatches(record.ledger_entries, entries)
    assert [] == chain_problems(ledger, handle.id)
    assert all(e.verified for e in entries if e.event == "approved")  # the worker verified the RN's signature


async def test_rate_zero_samples_nothing_and_a_partial_rate_samples_exactly_the_hashed_share(
        start_run: StartRun, store, settings) -> None:
    """Rate 0: no sampled entry. Rate 0.5: exactly the actions the hash picks, and the run completes all the same."""
    ledger = DecisionLedger(configured_database(settings))
    off = await start_run(make_member(store), policy=sampling(0.0))
    half = await start_run(make_member(store), policy=sampling(0.5))
    off_result, half_result = await off.result(), await half.result()

    assert ("completed", "completed") == (off_result.status, half_result.status)
    assert [] == [e for e in ledger.entries(off.id) if e.event == "sampled"]
    expected = [a.action_id for a in half_result.actions if quality_sampled(half.id, a.action_id, 0.5)]
    assert expected == [e.approval_id for e in ledger.entries(half.id) if e.event == "sampled"]


async def test_prior_auth_automatic_approval_is_sampled_through_the_shared_runtime(submit, store, settings) -> None:
    """An approval issued with no reviewer (every criterion met) is sampled as issue_determination; it is issued."""
    policy = PriorAuthPolicy()
    policy = policy.model_copy(update={"approvals": policy.approvals.model_copy(update={"quality_sample_rate": 1.0})})
    handle = await submit(make_pas_request(store), policy=policy)
    result = await handle.result()

    assert ("completed", "approve") == (result.status, result.determination)
    entries = DecisionLedger(configured_database(settings)).entries(handle.id)
    assert [("sampled", "issue_determination")] == [(e.event, e.tool) for e in entries]
    assert policy.policy_id == entries[0].policy_id


def test_settings_carry_the_sample_rate_into_both_programs_policies(settings, monkeypatch, tmp_path) -> None:
    """CARELOOM_QUALITY_SAMPLE_RATE (default 5 %) reaches the outreach and prior-auth routing; a routing file's own
    rate holds unless the variable is set."""
    from guardrails.policy import ApprovalRouting
    from runtime.settings import Settings

    assert (0.05, 0.05) == (outreach_policy(settings).approvals.quality_sample_rate,
                            prior_auth_policy(settings).approvals.quality_sample_rate)
    monkeypatch.setenv("CARELOOM_QUALITY_SAMPLE_RATE", "0.2")
    custom = Settings(state_dir=settings.state_dir, _env_file=None)
    assert (0.2, 0.2) == (outreach_policy(custom).approvals.quality_sample_rate,
                          prior_auth_policy(custom).approvals.quality_sample_rate)
    assert outreach_policy(custom).policy_id != outreach_policy(settings).policy_id
    monkeypatch.delenv("CARELOOM_QUALITY_SAMPLE_RATE")
    routing = tmp_path / "routing.json"
    routing.write_text(ApprovalRouting(quality_sample_rate=0.5).model_dump_json())
    from_file = Settings(state_dir=settings.state_dir, approval_routing_file=routing, _env_file=None)
    assert 0.5 == outreach_policy(from_file).approvals.quality_sample_rate
