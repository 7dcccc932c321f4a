"""`careloom um metrics`: the CMS-0057-F public prior-authorization metrics, from the golden UM histories (figures
checked by hand), from live runs on the dev server, and on bad input."""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import Client

from history.events import RunRecord, read_run
from history.files import load_history
from history.um_metrics import um_metrics
from runtime.settings import Settings
from store.ledger import DecisionLedger
from store.ledger_entries import LedgerEntry
from tests.cli import ROOT, careloom, clean_env
from tests.databases import session_env
from tests.pas_factory import make_pas_request
from workflows.prior_auth_models import PriorAuthResult

GOLDEN = ROOT / "tests" / "golden" / "histories"
UM_FILES = sorted(GOLDEN.glob("um-*.json"))

# Read by hand from each file's WorkflowExecutionCompleted result payload (base64 JSON): priority, received_at,
# decided_at, determination.
#   um-auto-approved       standard   07:34:22.505077 -> 07:34:22.695084  approve  0.190007 s
#   um-denial-md-approved  standard   07:34:25.731519 -> 07:34:25.960269  deny     0.228750 s
#   um-md-overturned       standard   07:34:28.832507 -> 07:34:29.050081  approve  0.217574 s
#   um-pended              standard   07:34:22.725265 -> 07:34:22.951956  pend     (not a determination)
#   um-expired             expedited  07:34:31.900593 -> none             none     (approval expired)
# all on 2026-12-02 UTC; and on 2026-12-07 UTC:
#   um-pend-answered       standard   07:25:57.747001 -> 07:26:00.245706  approve  2.498705 s (pended, answered:
#                                                                                    extended_from set)
#   um-appeal-overturned   a reconsideration (appeal_of set) of a standard request received 07:26:00.290856,
#                          approved: approved after appeal; not a request (its denial's run is not a golden file).
DECISION_SECONDS = [0.190007, 0.228750, 0.217574, 2.498705]
STANDARD_2026 = {
    "requests": 5, "approved": 3, "denied": 1, "partially_approved": 0, "pended": 1, "no_determination": 0,
    "approved_after_appeal": 1, "extended_then_approved": 1, "appeals": 1, "percent_approved": 60.0,
    "percent_denied": 20.0, "percent_partially_approved": 0.0, "percent_approved_after_appeal": 20.0,
    "percent_extended_then_approved": 20.0, "decided": 4}
EXPEDITED_2026 = {
    "requests": 1, "approved": 0, "denied": 0, "partially_approved": 0, "pended": 0, "no_determination": 1,
    "approved_after_appeal": 0, "extended_then_approved": 0, "appeals": 0, "percent_approved": 0.0,
    "percent_denied": 0.0,
    "percent_partially_approved": 0.0, "percent_approved_after_appeal": 0.0,
    "percent_extended_then_approved": 0.0, "decided": 0, "average_hours": None, "median_hours": None}
EMPTY = {"requests": 0, "approved": 0, "denied": 0, "pended": 0, "no_determination": 0, "decided": 0,
         "percent_approved": None, "percent_denied": None, "percent_approved_after_appeal": None,
         "percent_extended_then_approved": None, "average_hours": None, "median_hours": None}


def _golden(pattern: str = "*.json") -> list[RunRecord]:
    return [read_run(load_history(p).history) for p in sorted(GOLDEN.glob(pattern))]


def _subset(figures: object, expected: dict) -> dict:
    dumped = figures.model_dump() if hasattr(figures, "model_dump") else figures
    return {k: dumped[k] for k in expected}


def _received(record: RunRecord, at: datetime) -> RunRecord:
    """The run as if its request had been received at ``at`` (decided at the same recorded time)."""
    return dataclasses.replace(record, result=record.result.model_copy(update={"received_at": at}))


def test_the_golden_um_histories_give_the_figures_checked_by_hand() -> None:
    """Standard: 5 requests, 3 approved (one after the provider answered a pend: extended then approved), 1
    denied, the unanswered pend undecided, times over the 4 determinations, and 1 approved after appeal (the
    reconsideration is not a request); expedited: the expired request counts with no determination and no time;
    the outreach histories are skipped."""
    report = um_metrics(_golden(), 2026, source="golden")

    assert STANDARD_2026 == _subset(report.standard, STANDARD_2026)
    assert EXPEDITED_2026 == _subset(report.expedited, EXPEDITED_2026)
    assert statistics.fmean(DECISION_SECONDS) / 3600 == pytest.approx(report.standard.average_hours, rel=1e-6)
    assert (0.217574 + 0.228750) / 2 / 3600 == pytest.approx(report.standard.median_hours, rel=1e-6)
    assert (7, 0, 12, 0) == (report.runs_read, report.outside_year, report.other_programs, report.duplicate_runs)
    assert any(n.startswith("Approved after appeal: a reconsideration") for n in report.notes)


def test_a_year_without_requests_has_no_percentages_and_no_times() -> None:
    """No runs at all, and the golden runs for a year none was received in: every count 0, percents and times
    None (not 0%: nothing to divide), the golden runs counted as outside the year."""
    nothing = um_metrics([], 2026, source="none")
    assert (EMPTY, EMPTY) == (_subset(nothing.standard, EMPTY), _subset(nothing.expedited, EMPTY))
    assert 0 == nothing.runs_read

    before = um_metrics(_golden("um-*.json"), 2025, source="golden")
    assert (EMPTY, EMPTY) == (_subset(before.standard, EMPTY), _subset(before.expedited, EMPTY))
    assert (7, 7) == (before.runs_read, before.outside_year)


def test_the_year_is_the_year_of_receipt_in_utc() -> None:
    """A request received at 23:59:59 UTC on 31 December 2025 and decided in 2026 counts in 2025, not 2026; one
    received at midnight on 1 January 2026 counts in 2026."""
    runs = {r.workflow_id: r for r in _golden("um-*.json")}
    late = _received(runs["um-denial-md-approved"], datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))
    first = _received(runs["um-md-overturned"], datetime(2026, 1, 1, tzinfo=UTC))
    shifted = [late, first, runs["um-auto-approved"]]

    in_2025, in_2026 = um_metrics(shifted, 2025, source="t"), um_metrics(shifted, 2026, source="t")

    assert (1, 1, 0, 2) == (in_2025.standard.requests, in_2025.standard.denied, in_2025.standard.approved,
                            in_2025.outside_year)
    assert (2, 2, 0, 1) == (in_2026.standard.requests, in_2026.standard.approved, in_2026.standard.denied,
                            in_2026.outside_year)
    expected_hours = (late.result.decided_at - late.result.received_at).total_seconds() / 3600
    assert expected_hours == pytest.approx(in_2025.standard.average_hours)


def test_one_request_counts_once_and_a_run_without_result_counts_from_its_input() -> None:
    """The same workflow id twice counts once (the later run); a failed run (no result) is a request of its
    submission's priority with no determination."""
    runs = {r.workflow_id: r for r in _golden("um-*.json")}
    approved = runs["um-auto-approved"]
    failed = dataclasses.replace(runs["um-denial-md-approved"], result=None, closed_as="failed")

    report = um_metrics([approved, approved, failed], 2026, source="t")

    assert (2, 1, 0, 1, 1) == (report.standard.requests, report.standard.approved, report.standard.denied,
                               report.standard.no_determination, report.duplicate_runs)


def _entry(workflow_id: str, at: datetime, *, tool: str | None = None) -> LedgerEntry:
    return LedgerEntry(event_id=f"{workflow_id}/1", workflow_id=workflow_id, approval_id="d1-determination.1",
                       event="requested", tool=tool, actor="system", at=at, digest="0" * 64, policy_id="pa-test")


LEDGER = [
    _entry("prior-auth-history-gone", datetime(2026, 3, 1, tzinfo=UTC)),
    _entry("prior-auth-last-year", datetime(2025, 6, 1, tzinfo=UTC)),
    _entry("um-md-overturned", datetime(2026, 12, 2, 7, 34, 28, tzinfo=UTC), tool="issue_determination"),
    _entry("outreach-not-a-request", datetime(2026, 3, 1, tzinfo=UTC)),
]


def test_requests_the_ledger_knows_but_no_history_shows_are_flagged() -> None:
    """The ledger outlives Temporal's retention: a prior-authorization request of the year with ledger entries
    and no run read is counted as left out and the report opens with a note naming the fix; a request of
    another year, one whose run was read and another program's entries are not."""
    report = um_metrics(_golden("um-*.json"), 2026, source="golden", ledger=LEDGER)

    assert (True, 1) == (report.ledger_checked, report.ledger_only)
    assert report.notes[0].startswith("INCOMPLETE: the decision ledger has 1 prior-authorization request(s) of 2026")
    assert "careloom history export" in report.notes[0]
    assert STANDARD_2026 == _subset(report.standard, STANDARD_2026)  # flagged, never guessed into the figures
    unchecked = um_metrics(_golden("um-*.json"), 2026, source="golden")
    assert (False, 0, False) == (unchecked.ledger_checked, unchecked.ledger_only,
                                 unchecked.notes[0].startswith("INCOMPLETE"))


def _folder(tmp_path: Path, *extra: tuple[str, str]) -> Path:
    folder = tmp_path / "histories"
    folder.mkdir()
    for path in UM_FILES:
        shutil.copy(path, folder / path.name)
    for name, text in extra:
        (folder / name).write_text(text)
    return folder


def test_the_command_prints_json_a_table_and_a_page(tmp_path: Path) -> None:
    """Through the real command: --json carries the hand-checked figures, the table and the HTML page show them,
    appeals and extensions among them, and which year boundary applies."""
    folder, env = _folder(tmp_path), clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"))

    as_json = careloom(env, "um", "metrics", "--year", "2026", "--histories", str(folder), "--json")
    assert 0 == as_json.returncode, as_json.stderr
    report = json.loads(as_json.stdout)
    assert (STANDARD_2026, EXPEDITED_2026) == (_subset(report["standard"], STANDARD_2026),
                                               _subset(report["expedited"], EXPEDITED_2026))

    table = careloom(env, "um", "metrics", "--year", "2026", "--histories", str(folder))
    assert 0 == table.returncode, table.stderr
    assert "60.00% (3)" in table.stdout and "20.00% (1)" in table.stdout
    assert "approved after appeal" in table.stdout and "not tracked" not in table.stdout
    assert "by receipt time" in table.stdout

    page = careloom(env, "um", "metrics", "--year", "2026", "--histories", str(folder), "--html")
    assert 0 == page.returncode, page.stderr
    assert page.stdout.startswith("<!doctype html>")
    assert "<td>approved</td><td>60.00% (3)</td><td>0.00% (0)</td>" in page.stdout
    assert "<td>approved after appeal</td><td>20.00% (1)</td><td>0.00% (0)</td>" in page.stdout
    assert "<script" not in page.stdout


def test_the_command_compares_with_the_records_databases_ledger(tmp_path: Path) -> None:
    """With a records database in the state folder, the command reads its ledger (no database, or --no-ledger:
    not compared, and none is created)."""
    folder, state = _folder(tmp_path), tmp_path / "state"
    env = clean_env(CARELOOM_STATE_DIR=str(state))
    args = ("um", "metrics", "--year", "2026", "--histories", str(folder), "--json")

    without = json.loads(careloom(env, *args).stdout)
    assert (False, False) == (without["ledger_checked"], (state / "records.db").exists())

    state.mkdir(exist_ok=True)
    DecisionLedger(state / "records.db").append(LEDGER)
    checked = careloom(env, *args)
    assert 0 == checked.returncode, checked.stderr
    assert (True, 1) == (json.loads(checked.stdout)["ledger_checked"], json.loads(checked.stdout)["ledger_only"])
    assert False is json.loads(careloom(env, *args, "--no-ledger").stdout)["ledger_checked"]


@pytest.mark.parametrize(("extra", "where", "message"), [
    ((), "missing", "is not a folder"),
    ((), "empty", "no *.json history files"),
    ((("bundle.json", '{"resourceType": "Bundle"}'),), "folder", "bundle.json: the history has no events"),
    ((("cut.json", '{"events": ['),), "folder", "cut.json: not valid JSON"),
])
def test_bad_input_exits_2_naming_it(tmp_path: Path, extra: tuple, where: str, message: str) -> None:
    """A missing or empty folder, a JSON file that is not a history, a truncated file: exit 2 naming it, and no
    report (a public figure must not silently leave a file out)."""
    folder = {"missing": tmp_path / "nowhere", "empty": tmp_path}.get(where) or _folder(tmp_path, *extra)
    done = careloom(clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state")), "um", "metrics", "--year", "2026",
                    "--histories", str(folder), "--json")
    assert 2 == done.returncode
    assert message in " ".join(done.stderr.split())
    assert "" == done.stdout


def test_conflicting_outputs_and_a_bad_year_exit_2(tmp_path: Path) -> None:
    """--json with --html, and a year that is not one, are refused before anything is read."""
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"))
    both = careloom(env, "um", "metrics", "--year", "2026", "--histories", str(GOLDEN), "--json", "--html")
    year = careloom(env, "um", "metrics", "--year", "0", "--histories", str(GOLDEN))
    assert (2, 2) == (both.returncode, year.returncode)
    assert "choose one" in both.stderr and "--year 0 is not a calendar year" in year.stderr


@pytest.mark.slow
async def test_live_runs_are_listed_page_by_page_and_counted_by_receipt_year(
    client: Client, submit, store, settings: Settings
) -> None:
    """Two requests approved by the rules on the dev server, received in 2009 and in 2010: listed one per page and
    each counted in its own year; the command without --histories gives the 2009 one from Temporal."""
    from cli.um_metrics import live_runs

    results: list[PriorAuthResult] = []
    for year in (2009, 2010):
        handle = await submit(make_pas_request(store), received_at=datetime(year, 6, 1, 12, tzinfo=UTC))
        results.append(await handle.result())
    assert ["approve", "approve"] == [r.determination for r in results]

    records = await live_runs(client, 2009, None, page_size=1)
    ours = [r for r in records if r.workflow_id in {r.workflow_id for r in results}]
    assert 2 == len(ours)
    for result in results:
        report = um_metrics(records, result.received_at.year, source="t")
        hours = (result.decided_at - result.received_at).total_seconds() / 3600
        assert (1, 1, hours, hours) == (report.standard.requests, report.standard.approved,
                                        report.standard.average_hours, report.standard.median_hours)

    done = careloom(clean_env(TEMPORAL_ADDRESS=client.service_client.config.target_host,
                              CARELOOM_LOG_LEVEL="WARNING", **session_env(settings)),
                    "um", "metrics", "--year", "2009", "--json", timeout=180)
    assert 0 == done.returncode, done.stderr
    live = json.loads(done.stdout)
    assert (1, 1, 0) == (live["standard"]["requests"], live["standard"]["approved"], live["expedited"]["requests"])
    assert live["source"].startswith("Temporal namespace")
