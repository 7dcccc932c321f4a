"""`careloom history export|replay|audit|what-if` on real histories from the dev server, and on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from guardrails.approvals import ApprovalDecision
from guardrails.policy import GuardrailPolicy
from history.audit import audit
from history.events import read_run
from history.files import load_history
from history.history_json import history_from_dict
from history.what_if import what_if
from runtime.settings import Settings
from runtime.temporal_server import temporal_binary
from store.connect import configured_database
from store.ledger import DecisionLedger
from tests.cli import ROOT, careloom, clean_env
from tests.conftest import OPEN_WINDOW, StartRun, wait_for_status
from tests.databases import session_env
from tests.deciding import decide
from tests.fhir_factory import HIGH_RISK, make_member

GOLDEN = ROOT / "tests" / "golden" / "histories"


def live_cli(env: WorkflowEnvironment, settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the test's Temporal server and the session's state."""
    return careloom(clean_env(TEMPORAL_ADDRESS=env.client.service_client.config.target_host,
                              CARELOOM_LOG_LEVEL="WARNING", **session_env(settings)), *args, timeout=180)


@pytest.mark.slow
async def test_export_replay_and_audit_a_live_run(
    env: WorkflowEnvironment, start_run: StartRun, store, client, settings, tmp_path: Path
) -> None:
    """A run approved by an RN is exported, replays ok, and its audit shows tools, proposals, verdicts,
    the approval with approver and digest, and the outcome; the ledger agrees with the history."""
    handle = await start_run(make_member(store, **HIGH_RISK))
    [item] = (await wait_for_status(handle, lambda s: len(s.pending_approvals) == 1)).pending_approvals
    await decide(client, handle.id, ApprovalDecision(approval_id=item.approval_id, digest=item.digest,
                                                     decision="approve", approver="rn.kim", role="rn"))
    await handle.result()
    out = tmp_path / "export"

    exported = live_cli(env, settings, "history", "export", "--out", str(out), "-w", handle.id,
                        "-w", "outreach-no-such-run")
    assert 1 == exported.returncode
    assert "outreach-no-such-run: cannot export" in exported.stderr
    assert [f"{handle.id}.json"] == [p.name for p in out.iterdir()]

    replayed = live_cli(env, settings, "history", "replay", str(out), "--json")
    assert (0, ["ok"]) == (replayed.returncode, [o["status"] for o in json.loads(replayed.stdout)])

    report = audit(read_run(load_history(out / f"{handle.id}.json").history), DecisionLedger(configured_database(settings)))
    kinds = {e.kind for e in report.entries}
    assert {"trigger", "tool", "proposal", "verdict", "approval", "decision", "outcome"} <= kinds
    decision = next(e for e in report.entries if e.kind == "decision")
    assert f"approve by rn.kim (rn), digest {item.digest[:12]}" in decision.summary
    assert (True, []) == (report.ledger_checked, report.ledger_mismatches)

    live = live_cli(env, settings, "history", "audit", handle.id, "--json")
    assert 0 == live.returncode, live.stderr
    assert "completed" == json.loads(live.stdout)["outcome"]

    # The same run exported by the temporal CLI itself parses on careloom's fast path to the SDK's History.
    shown = subprocess.run([str(temporal_binary()), "workflow", "show", "--output", "json", "-w", handle.id,
                            "--address", env.client.service_client.config.target_host],
                           capture_output=True, text=True, timeout=60)
    assert 0 == shown.returncode, shown.stderr
    raw = json.loads(shown.stdout)
    sdk = History(events=WorkflowHistory.from_json(handle.id, shown.stdout).events)
    assert history_from_dict(raw) == sdk == History(events=load_history(out / f"{handle.id}.json").history.events)


def test_audit_reports_ledger_entries_missing_from_the_database(tmp_path: Path) -> None:
    """Cross-checked against an empty ledger, every approval event of the history is reported missing."""
    record = read_run(load_history(GOLDEN / "approved.json").history)
    report = audit(record, DecisionLedger(tmp_path / "empty.db"))
    assert 2 == len(report.ledger_mismatches)
    assert all("not in the ledger" in m for m in report.ledger_mismatches)


def test_audit_of_an_exported_file_needs_no_database(tmp_path: Path) -> None:
    """The audit command reads an exported file with no server and no database."""
    result = careloom(clean_env(CARELOOM_STATE_DIR=str(tmp_path / "none")), "history", "audit",
                      str(GOLDEN / "escalated.json"), timeout=120)
    assert 0 == result.returncode, result.stderr
    assert "expired by system" in result.stdout
    assert "escalation chain exhausted" in result.stdout


def test_what_if_counts_routing_changes_and_flags_lost_human_review() -> None:
    """Raising the LACE cut-off removes clinician review from high-risk care plans, and says so."""
    records = [read_run(load_history(p).history) for p in sorted(GOLDEN.glob("*.json"))]
    report = what_if(records, OPEN_WINDOW.model_copy(update={"high_risk_lace": 15}))
    lost = {(c.workflow_id, c.action_id) for c in report.human_removed}
    assert {("approved", "a3-care-plan"), ("edited", "a3-care-plan"), ("rejected", "a3-care-plan"),
            ("escalated", "a3-care-plan")} == lost
    assert (0, 4) == (report.approvals_added, report.approvals_removed)
    assert report.automation_after > report.automation_before

    stricter = what_if(records, OPEN_WINDOW.model_copy(update={"min_confidence": 0.999}))
    assert stricter.approvals_added > 0 and [] == stricter.human_removed
    assert 1 == stricter.runs_stopped_before == stricter.runs_stopped_after  # the ineligible case


def test_bad_files_are_named_and_the_others_still_processed(tmp_path: Path) -> None:
    """Corrupt, truncated and foreign histories are errors naming the file; good files still replay ok."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(GOLDEN / "auto-completed.json", folder / "good.json")
    (folder / "corrupt.json").write_text("{not json")
    text = (GOLDEN / "blocked.json").read_text()
    (folder / "truncated.json").write_text(text[: len(text) // 2])
    foreign = json.loads((GOLDEN / "blocked.json").read_text())
    foreign["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]["name"] = "BillingWorkflow"
    (folder / "foreign.json").write_text(json.dumps(foreign))
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"))

    result = careloom(env, "history", "replay", str(folder), "--json", timeout=120)

    assert 1 == result.returncode
    outcomes = {Path(o["source"]).name: o for o in json.loads(result.stdout)}
    assert "ok" == outcomes["good.json"]["status"]
    assert "not valid JSON" in outcomes["corrupt.json"]["detail"]
    assert "not valid JSON" in outcomes["truncated.json"]["detail"]
    assert "a BillingWorkflow history, not CareGapWorkflow or MemberOutreachWorkflow" in outcomes["foreign.json"]["detail"]
    assert str(folder / "foreign.json") in outcomes["foreign.json"]["detail"]

    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = careloom(env, "history", "replay", str(empty), timeout=120)
    assert 2 == nothing.returncode
    assert "no *.json history files" in nothing.stderr

    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"high_risk_lace": 12, "approval_sla": 3}))
    refused = careloom(env, "history", "what-if", "--policy", str(policy), str(GOLDEN), timeout=120)
    assert 2 == refused.returncode
    assert f"{policy}: invalid policy at approval_sla: Extra inputs are not permitted" in refused.stderr


def test_a_policy_file_round_trips(tmp_path: Path) -> None:
    """A policy written as JSON loads back identical (same policy id)."""
    from history.what_if import load_policy

    path = tmp_path / "p.json"
    path.write_text(GuardrailPolicy(high_risk_lace=12).model_dump_json())
    assert GuardrailPolicy(high_risk_lace=12).policy_id == load_policy(path).policy_id


def test_usage_report_totals_model_tokens_and_counts_fallbacks(tmp_path: Path) -> None:
    """`history usage` reads planner steps from exported files: tokens and cost per model, failures, fallbacks."""
    result = careloom(clean_env(CARELOOM_STATE_DIR=str(tmp_path / "none")), "history", "usage", str(GOLDEN),
                      "--json", timeout=120)
    assert 0 == result.returncode, result.stderr
    report = json.loads(result.stdout)
    planned = read_run(load_history(GOLDEN / "model-planned.json").history)
    usage = next(c.result.usage for c in planned.calls if c.name == "agents.plan_outreach")
    [model] = [line for line in report["lines"] if line["model"] == "scripted-model"]
    assert (1, usage.prompt_tokens, usage.completion_tokens) == (
        model["runs"], model["prompt_tokens"], model["completion_tokens"])
    assert (19, 1, 1) == (report["runs"], report["failed_planning_attempts"], report["fallbacks"])
    [um] = [line for line in report["lines"] if line["planner"] == "offline-um-rules/1"]
    # 7 prior-authorization runs; the one answered after a pend planned twice (a step per review round).
    assert (7, 8, 0) == (um["runs"], um["steps"], um["requests"])


def test_audit_of_a_prior_auth_run_shows_criteria_sign_offs_and_the_claim_response() -> None:
    """The denial golden run's timeline: the request, the evidence review, the MD's and the second reviewer's
    sign-offs in the ledger, and the ClaimResponse written after them."""
    report = audit(read_run(load_history(GOLDEN / "um-denial-md-approved.json").history))
    kinds = [e.kind for e in report.entries]
    text = "\n".join(e.summary for e in report.entries)
    assert ("trigger", "completed") == (kinds[0], report.outcome)
    assert "prior-authorization request Claim/" in report.entries[0].summary
    assert "criteria met with citations" in text
    assert "signed_off by dr.rivera (md)" in text and "approved by rn.kim (rn)" in text
    signed = next(e.at for e in report.entries if "signed_off by dr.rivera" in e.summary)
    written = next(e for e in report.entries if e.kind == "outcome" and "ClaimResponse/" in e.summary)
    assert written.at >= signed and "approved by dr.rivera, rn.kim" in written.summary


def test_what_if_on_prior_auth_runs_uses_the_prior_auth_policy() -> None:
    """Turning automatic approval off puts the auto-approved request in front of a reviewer; denials stay
    with the MD; outreach runs are skipped, not judged under a policy that is not theirs."""
    from guardrails.prior_auth_policy import PriorAuthPolicy
    from workflows.programs import PRIOR_AUTH

    records = [read_run(load_history(p).history) for p in sorted(GOLDEN.glob("*.json"))]
    report = what_if(records, PriorAuthPolicy(auto_approve=False), PRIOR_AUTH)
    assert (7, 12) == (report.cases, report.other_programs_skipped)
    assert [("um-auto-approved", "allow", "require_approval", "rn")] == [
        (c.workflow_id, c.old, c.new, c.new_role) for c in report.changes]
    assert [] == report.human_removed


def test_audit_of_an_answered_pend_and_of_a_reconsideration() -> None:
    """The answered pend's timeline shows the answer between the two review rounds; the reconsideration's trigger
    names the determination appealed and the reviewers it excludes."""
    answered = audit(read_run(load_history(GOLDEN / "um-pend-answered.json").history))
    kinds = [e.kind for e in answered.entries]
    [documentation] = [e for e in answered.entries if e.kind == "documentation"]
    assert "pend answered: QuestionnaireResponse/" in documentation.summary
    assert 2 == sum(e.kind == "proposal" for e in answered.entries) and "completed" == answered.outcome
    assert kinds.index("documentation") < max(i for i, k in enumerate(kinds) if k == "proposal")
    appeal = audit(read_run(load_history(GOLDEN / "um-appeal-overturned.json").history))
    assert appeal.entries[0].summary.startswith("reconsideration of ClaimResponse/")
    assert "excluded reviewers: dr.rivera, rn.kim" in appeal.entries[0].summary


def test_audit_of_a_care_gap_run_shows_the_gaps_the_outreach_and_the_recheck_that_closed_them() -> None:
    report = audit(read_run(load_history(GOLDEN / "gap-closed.json").history))
    text = "\n".join(e.summary for e in report.entries)
    assert report.entries[0].summary.startswith("care gaps of member ")
    assert "1 open gap(s) of 1 measure(s): cms122-diabetes-hba1c-poor-control" in text
    assert "0 open gap(s) of 1 measure(s): none" in text and "completed" == report.outcome
    assert 3 == sum(e.kind == "proposal" for e in report.entries)
