"""The monitoring report: ledger figures, PSI drift from real run histories, the quality queue and both commands."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from agents.planner import PLAN_ACTIVITY
from api.users import UserDirectory
from evaluation.monitor import drift_level, history_figures, ledger_figures, psi, render_html
from evaluation.quality import QualityReviewError, pending_samples, review_entry
from history.events import ActivityCall, read_run
from history.files import write_history
from store.ledger import DecisionLedger
from store.ledger_entries import LedgerEntry
from tests.cli import careloom, clean_env
from tests.conftest import StartRun, wait_for_status
from tests.fhir_factory import HIGH_RISK, make_member

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday


def entry(wf: str, item: str, event: str, hours: float, *, tool: str | None = None, role: str | None = None,
          actor: str = "system", queue: str | None = None, digest: str = "d" * 64, reason: str | None = None,
          seq: list[int] = [0]) -> LedgerEntry:  # noqa: B006 - a counter shared by the calls of one module
    seq[0] += 1
    return LedgerEntry(event_id=f"{wf}/{seq[0]}", workflow_id=wf, approval_id=item, event=event, tool=tool,
                       actor=actor, role=role, at=T0 + timedelta(hours=hours), digest=digest, queue=queue,
                       reason=reason, policy_id="outreach-policy/1#0123456789")


def known_ledger() -> list[LedgerEntry]:
    """Five approval items and three sampled actions whose figures are worked out by hand below."""
    cc, cr, um = "care-coordination", "clinical-review", "um-medical-review-expedited"
    return [
        # approved by a care coordinator after 2 h: within SLA
        entry("wf1", "a1.1", "requested", 0, tool="create_task", queue=cc),
        entry("wf1", "a1.1", "approved", 2, tool="create_task", queue=cc, actor="cc.jones", role="care_coordinator"),
        # rejected by an RN after 10 h, after an escalation at 8 h: not within SLA
        entry("wf1", "a2.1", "requested", 0, tool="send_outreach", queue=cr),
        entry("wf1", "a2.1", "reminded", 6, tool="send_outreach", queue=cr),
        entry("wf1", "a2.1", "escalated", 8, tool="send_outreach", queue="clinical-review-lead"),
        entry("wf1", "a2.1", "rejected", 10, tool="send_outreach", queue="clinical-review-lead", actor="rn.kim",
              role="rn", reason="member asked for a call"),
        # edited by an RN after 4 h
        entry("wf2", "a3.1", "requested", 0, tool="draft_care_plan", queue=cr),
        entry("wf2", "a3.1", "edited", 4, tool="draft_care_plan", queue=cr, actor="rn.kim", role="rn",
              digest="e" * 64),
        # nobody decided: reminded, escalated, expired
        entry("wf2", "a4.1", "requested", 0, tool="create_task", queue=cc),
        entry("wf2", "a4.1", "reminded", 6, tool="create_task", queue=cc),
        entry("wf2", "a4.1", "escalated", 8, tool="create_task", queue="care-coordination-lead"),
        entry("wf2", "a4.1", "expired", 12, tool="create_task", queue="care-coordination-lead"),
        # a determination an MD edited at the first sign-off, a second reviewer approved after 6 h
        entry("wf3", "d1.1", "requested", 0, tool="issue_determination", queue=um),
        entry("wf3", "d1.1", "signed_off", 3, tool="issue_determination", queue=um, actor="dr.rivera", role="md",
              digest="f" * 64),
        entry("wf3", "d1.1", "approved", 6, tool="issue_determination", queue=um, actor="rn.kim", role="rn",
              digest="f" * 64),
        # quality sampling: one appropriate, one inappropriate, one awaiting review
        entry("wf1", "a5", "sampled", 1, tool="create_task", queue="quality-review"),
        entry("wf1", "a5", "quality_reviewed", 30, tool="create_task", queue="quality-review", actor="rn.kim",
              role="rn", reason="appropriate"),
        entry("wf2", "a6", "sampled", 1, tool="send_outreach", queue="quality-review"),
        entry("wf2", "a6", "quality_reviewed", 30, tool="send_outreach", queue="quality-review", actor="rn.kim",
              role="rn", reason="inappropriate: sent on a holiday"),
        entry("wf3", "a7", "sampled", 1, tool="create_task", queue="quality-review"),
    ]


def test_ledger_figures_match_the_hand_computed_rates_sla_and_findings() -> None:
    """Rates per kind and role, the SLA shares and median, clock counts and audited precision, as worked out."""
    figures = ledger_figures(known_ledger())

    by_tool = {r.key: (r.decided, r.approved, r.edited, r.rejected) for r in figures.by_tool}
    assert {"create_task": (1, 1, 0, 0), "send_outreach": (1, 0, 0, 1), "draft_care_plan": (1, 0, 1, 0),
            "issue_determination": (1, 0, 1, 0)} == by_tool
    rn = next(r for r in figures.by_role if r.key == "rn")
    assert (3, 2 / 3, 1 / 3, 0.0) == (rn.decided, rn.edited_rate, rn.rejected_rate, rn.approved_rate)
    assert (5, 0, 4) == (figures.requested, figures.pending, figures.decided)
    sla = {s.queue: (s.closed, s.within_sla, s.within_sla_share) for s in figures.sla_by_queue}
    assert {"care-coordination": (2, 1, 0.5), "clinical-review": (2, 1, 0.5),
            "um-medical-review-expedited": (1, 1, 1.0)} == sla
    assert (5, 3, 0.6, 5.0) == (figures.sla.closed, figures.sla.within_sla, figures.sla.within_sla_share,
                                figures.sla.median_hours)  # median of 2, 4, 6, 10 hours
    assert (2, 2, 2, 1) == (figures.reminded, figures.escalated, figures.items_escalated, figures.expired)
    q = figures.quality
    assert (3, 2, 1, 1, 0.5) == (q.total.sampled, q.total.reviewed, q.total.appropriate, q.total.inappropriate,
                                 q.total.precision)
    assert {"create_task": (2, 1, 1.0), "send_outreach": (1, 1, 0.0)} == {
        x.tool: (x.sampled, x.reviewed, x.precision) for x in q.by_tool}


def test_since_keeps_only_items_that_began_on_or_after_the_date() -> None:
    """--since cuts by the item's first entry: an item requested before it does not count at all."""
    later = [entry("wf9", "b1.1", "requested", 48, tool="create_task", queue="care-coordination"),
             entry("wf9", "b1.1", "approved", 49, tool="create_task", actor="cc.jones", role="care_coordinator")]
    figures = ledger_figures(known_ledger() + later, since=(T0 + timedelta(days=2)).date())
    assert (1, 1, 0) == (figures.requested, figures.decided, figures.quality.total.sampled)


def test_psi_matches_a_hand_computed_value_and_is_zero_for_identical_distributions() -> None:
    """PSI = sum (a - e) ln(a / e): 50/50 → 25/75 is 0.25 ln 2 + 0.25 ln 1.5; identical counts give 0."""
    assert math.isclose(0.25 * math.log(2) + 0.25 * math.log(1.5), psi([50, 50], [25, 75]), rel_tol=1e-9)
    assert 0.0 == psi([3, 5, 0, 2], [30, 50, 0, 20])
    empty_bin = psi([10, 0], [5, 5])  # the empty bin counts as 1e-4, so the value is large but finite
    assert math.isclose(0.5 * math.log(2) + (0.5 - 1e-4) * math.log(0.5 / 1e-4), empty_bin, rel_tol=1e-9)
    assert ("stable", "moderate", "significant") == (drift_level(0.05), drift_level(0.2), drift_level(0.3))
    with pytest.raises(ValueError, match="same bins"):
        psi([1, 2], [1, 2, 3])


async def test_history_figures_drift_fallbacks_and_model_errors_from_real_runs(
        start_run: StartRun, store, tmp_path: Path) -> None:
    """Real runs' histories: LACE 5 in week 1, LACE 10 in week 2 (PSI 2(1-ε)ln(1/ε), significant), LACE 5 again in
    week 3 (PSI 0); confidence is stable; a failed planner call and a fallback plan are counted."""
    moderate, high, again = make_member(store), make_member(store, **HIGH_RISK), make_member(store)
    handles = [await start_run(m) for m in (moderate, high, again)]
    for handle in handles[::2]:
        await handle.result()
    await wait_for_status(handles[1], lambda s: s.status == "awaiting_approval")  # planned, care plan parked
    records = []
    for n, handle in enumerate(handles):
        record = read_run(await handle.fetch_history())
        records.append(dataclasses.replace(record, started_at=T0 + timedelta(weeks=n)))
    broken = records[2]
    _, plan = broken.plan
    fallback = dataclasses.replace(broken.calls[-1], name=PLAN_ACTIVITY,
                                   result=plan.model_copy(update={"planner": "model:m → offline-rules/1 (fallback)"}))
    failed = ActivityCall(name=PLAN_ACTIVITY, scheduled_at=T0, input=None, failure="ModelEndpointError: 401")
    records[2] = dataclasses.replace(broken, calls=[*broken.calls, failed, fallback])

    figures = history_figures(records)

    assert ["2026-W10", "2026-W11", "2026-W12"] == [w.week for w in figures.lace.weeks]
    assert [5.0, 10.0, 5.0] == [w.mean for w in figures.lace.weeks]
    week2, week3 = figures.lace.weeks[1:]
    assert math.isclose(2 * (1 - 1e-4) * math.log(1e4), week2.psi, rel_tol=1e-3)
    assert ("significant", 0.0, "stable") == (week2.level, week3.psi, week3.level)
    assert ["baseline", "stable"] == [w.level for w in figures.confidence.weeks][::2]
    assert (3, 3, 1, 1) == (figures.runs, figures.planned, figures.fallbacks, figures.model_errors)
    assert {"create_task": 2, "draft_care_plan": 2, "send_outreach": 2} == figures.automatic_executions
    assert 1 == len(history_figures(records, since=date(2026, 3, 16)).lace.weeks)
    assert 2 == len(history_figures(records, baseline_weeks=2).lace.baseline_weeks)

    folder = tmp_path / "histories"
    for handle in handles[::2]:
        write_history(folder, await handle.fetch_history())
    result = careloom(cli_env(tmp_path), "monitor", "report", "--histories", str(folder), "--json")
    assert 0 == result.returncode, result.stderr
    assert 2 == json.loads(result.stdout)["histories"]["runs"]


def cli_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"), CARELOOM_LOG_FORMAT="json",
                     CARELOOM_LOG_LEVEL="WARNING")


def test_quality_review_refuses_unknown_findings_unsampled_actions_and_second_reviews() -> None:
    """Each refusal names the problem and the fix."""
    ledger = known_ledger()
    common = {"note": None, "reviewer": "rn.kim", "role": "rn", "now": T0}
    with pytest.raises(QualityReviewError, match="unknown finding 'fine'"):
        review_entry(ledger, workflow_id="wf3", action_id="a7", finding="fine", **common)
    with pytest.raises(QualityReviewError, match="never sampled.*careloom quality list"):
        review_entry(ledger, workflow_id="wf3", action_id="a1", finding="appropriate", **common)
    with pytest.raises(QualityReviewError, match="already reviewed by rn.kim"):
        review_entry(ledger, workflow_id="wf1", action_id="a5", finding="appropriate", **common)
    assert ["a7"] == [s.action_id for s in pending_samples(ledger)]


def test_quality_and_monitor_commands_work_the_queue_and_write_a_self_contained_report(tmp_path: Path) -> None:
    """`quality list/review` through the real command, then `monitor report --json --html`; bad input exits 2."""
    env = cli_env(tmp_path)
    DecisionLedger(tmp_path / "state" / "records.db").append(known_ledger())
    UserDirectory(tmp_path / "state" / "users.json").add_user("rn.kim", "rn")

    listed = careloom(env, "quality", "list", "--json")
    assert 0 == listed.returncode, listed.stderr
    assert [("wf3", "a7", "create_task")] == [(s["workflow_id"], s["action_id"], s["tool"])
                                              for s in json.loads(listed.stdout)]
    bad = careloom(env, "quality", "review", "wf3", "a7", "--finding", "fine", "--reviewer", "rn.kim")
    assert 2 == bad.returncode and "unknown finding 'fine'; use --finding appropriate" in bad.stderr
    stranger = careloom(env, "quality", "review", "wf3", "a7", "--finding", "appropriate", "--reviewer", "nobody")
    assert 2 == stranger.returncode and "careloom users add nobody" in stranger.stderr
    unsampled = careloom(env, "quality", "review", "wf3", "zz", "--finding", "appropriate", "--reviewer", "rn.kim")
    assert 1 == unsampled.returncode and "never sampled" in unsampled.stderr
    done = careloom(env, "quality", "review", "wf3", "a7", "--finding", "appropriate", "--note", "right call",
                    "--reviewer", "rn.kim")
    assert 0 == done.returncode, done.stderr
    again = careloom(env, "quality", "review", "wf3", "a7", "--finding", "inappropriate", "--reviewer", "rn.kim")
    assert 1 == again.returncode and "already reviewed" in again.stderr
    assert "[]" == careloom(env, "quality", "list", "--json").stdout.strip()

    report = careloom(env, "monitor", "report", "--json", "--html", str(tmp_path / "out"))
    assert 0 == report.returncode, report.stderr
    quality = json.loads(report.stdout)["ledger"]["quality"]["total"]
    assert (3, 3, 2 / 3) == (quality["sampled"], quality["reviewed"], quality["precision"])
    page = (tmp_path / "out" / "monitoring-report.html").read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", page)
    assert "<script" not in page

    not_a_date = careloom(env, "monitor", "report", "--since", "last week")
    assert (2, True) == (not_a_date.returncode, "--since must be a date like 2026-01-31" in not_a_date.stderr)
    missing = careloom(env, "monitor", "report", "--histories", str(tmp_path / "nowhere"))
    assert (2, True) == (missing.returncode, "is not a folder" in missing.stderr)
    (tmp_path / "empty").mkdir()
    empty = careloom(env, "monitor", "report", "--histories", str(tmp_path / "empty"))
    assert 2 == empty.returncode and "careloom history export" in empty.stderr
    text = careloom(env, "monitor", "report", "--since", "2026-03-01")
    assert 0 == text.returncode and "audited precision 66.7%" in text.stdout


def test_render_html_without_histories_still_has_every_ledger_section() -> None:
    """The page lists decisions, SLA, clocks and quality even with no histories given."""
    from evaluation.monitor import monitor_report

    page = render_html(monitor_report(known_ledger(), None, now=T0))
    for heading in ("Human decisions", "Time to decision against SLA", "Clocks", "Quality sampling"):
        assert f"<h2>{heading}" in page
