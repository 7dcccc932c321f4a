"""The ``careloom`` command as a user runs it: real processes, the embedded server, the sample data."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli import CARELOOM, ROOT, careloom, clean_env
from tests.net import free_port


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    return clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"), CARELOOM_EMBEDDED_PORT=str(free_port()),
                     CARELOOM_EMBEDDED_UI_PORT=str(free_port()), CARELOOM_API_PORT=str(free_port()),
                     CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING")


@pytest.mark.slow
def test_demo_then_approve_from_the_cli_completes_the_run(cli_env: dict[str, str]) -> None:
    """`demo --exit` parks some runs and completes others; after `up`, a CLI approval finishes one."""
    demo = careloom(cli_env, "demo", "--exit", "--json")
    assert 0 == demo.returncode, demo.stderr[-3000:]
    runs = json.loads(demo.stdout)["runs"]
    statuses = {r["status"] for r in runs}
    assert {"completed", "awaiting_approval"} <= statuses, statuses
    assert 15 == len(runs)  # every 2024 discharge in the sample

    again = careloom(cli_env, "demo", "--exit", "--json")  # same episodes: no second runs
    assert sorted(r["workflow_id"] for r in runs) == sorted(r["workflow_id"] for r in json.loads(again.stdout)["runs"])

    up = subprocess.Popen([*CARELOOM, "up"], cwd=ROOT, env=cli_env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        pending = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not pending:
            listed = careloom(cli_env, "approvals", "list", "--role", "rn", "--json")
            # An outreach item: the list is ordered by due time, and a prior-auth item may come first.
            pending = [i for i in (json.loads(listed.stdout) if listed.returncode == 0 else [])
                       if i["workflow_id"].startswith("outreach-")]
            time.sleep(0.5)
        assert pending, "no rn outreach approvals listed after `careloom up`"
        item = pending[0]
        assert "rn" == item["required_role"]
        wf, approval = item["workflow_id"], item["approval_id"]

        stale = careloom(cli_env, "approvals", "approve", wf, approval, "--digest", "0" * 64,
                         "--as", "rn.kim")
        assert 1 == stale.returncode
        assert "stale digest" in stale.stderr

        approved = careloom(cli_env, "approvals", "approve", wf, approval, "--digest", item["digest"],
                            "--as", "rn.kim", "--json")
        assert 0 == approved.returncode, approved.stderr
        assert ("approve", "rn.kim", "rn") == tuple(json.loads(approved.stdout)[k] for k in ("decision", "approver", "role"))

        unknown = careloom(cli_env, "approvals", "approve", wf, approval, "--digest", item["digest"], "--as", "nobody")
        assert 2 == unknown.returncode
        assert "unknown user 'nobody'" in unknown.stderr

        def approved_action_status(status: dict) -> str | None:
            return next((a["status"] for a in status.get("actions", []) if approval.startswith(a["action_id"] + ".")),
                        None)

        status: dict = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and approved_action_status(status) != "executed":
            shown = careloom(cli_env, "outreach", "status", wf, "--json")
            status = json.loads(shown.stdout) if shown.returncode == 0 else {}
            time.sleep(0.5)
        assert "executed" == approved_action_status(status), status
        # The run completes, unless a message waits for the member's TCPA contact window (at night).
        others = {a["status"] for a in status["actions"]}
        assert status["status"] == "completed" or (status["status"] == "deferred" and "deferred" in others), status
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(timeout=60)
    assert 0 == code, up.stderr.read()[-3000:] if up.stderr else ""


def test_import_reports_bad_lines_and_exits_non_zero(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A malformed line is reported as file:line and the exit status says something was skipped."""
    folder = tmp_path / "bulk"
    folder.mkdir()
    good = {"resourceType": "Patient", "id": "pt-cli-1", "gender": "female"}
    (folder / "Patient.ndjson").write_text(json.dumps(good) + "\n{not json\n")
    result = careloom(cli_env, "import", str(folder), "--json")
    assert 1 == result.returncode
    report = json.loads(result.stdout)
    assert (1, 1) == (report["inserted"], report["skipped"])
    assert report["problems"][0].startswith(f"{folder / 'Patient.ndjson'}:2: not valid JSON")
    assert 0 == careloom(cli_env, "import", str(ROOT / "sample_data")).returncode


def test_import_of_a_missing_folder_names_the_path(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A path that does not exist is a clear error (exit 2), not a traceback."""
    result = careloom(cli_env, "import", str(tmp_path / "nowhere"))
    assert 2 == result.returncode
    assert "nowhere does not exist" in result.stderr


def test_users_add_prints_a_token_once_and_stores_only_its_hash(cli_env: dict[str, str], tmp_path: Path) -> None:
    """`users add` shows the token once; the users file holds only its SHA-256."""
    added = careloom(cli_env, "users", "add", "rn.new", "--role", "rn")
    assert 0 == added.returncode, added.stderr
    token = added.stdout.strip().rsplit(" ", 1)[-1]
    stored = (tmp_path / "state" / "users.json").read_text()
    assert token.startswith("clt_") and token not in stored
    listed = careloom(cli_env, "users", "list", "--json")
    assert [{"user_id": "rn.new", "role": "rn", "display_name": None}] == json.loads(listed.stdout)
    duplicate = careloom(cli_env, "users", "add", "rn.new", "--role", "md")
    assert 2 == duplicate.returncode


def test_ledger_verify_detects_an_altered_entry(cli_env: dict[str, str], tmp_path: Path) -> None:
    """`ledger verify` passes on an intact chain and exits 1 naming the entry after tampering."""
    import sqlite3
    from datetime import UTC, datetime

    from store.ledger import DecisionLedger
    from store.ledger_entries import LedgerEntry

    ledger = DecisionLedger(tmp_path / "state" / "records.db")
    ledger.append([LedgerEntry(event_id=f"wf/{n}", workflow_id="wf", approval_id="a1.1", event="requested",
                               actor="system", at=datetime.now(UTC), digest="d" * 64, policy_id="p") for n in (1, 2)])
    assert 0 == careloom(cli_env, "ledger", "verify", "--chain-only").returncode
    with sqlite3.connect(tmp_path / "state" / "records.db") as conn:
        conn.execute("DROP TRIGGER decision_ledger_no_update")
        conn.execute("UPDATE decision_ledger SET body = replace(body, 'system', 'mallory') WHERE seq = 1")
    tampered = careloom(cli_env, "ledger", "verify", "--chain-only")
    assert 1 == tampered.returncode
    assert "entry 1: content does not match its hash (altered)" in tampered.stdout


@pytest.mark.slow
def test_demo_plans_on_the_model_when_one_is_configured(cli_env: dict[str, str]) -> None:
    """With CARELOOM_MODEL and an endpoint set, every planned run of the demo is planned by the model, and
    every prior-authorization request is recommended by it."""
    from tests.model_server import running_model_server

    with running_model_server() as model:
        env = {**cli_env, "CARELOOM_MODEL": "scripted-model", "CARELOOM_MODEL_BASE_URL": model.url,
               "CARELOOM_MODEL_INPUT_USD_PER_MTOK": "0.15", "CARELOOM_MODEL_OUTPUT_USD_PER_MTOK": "0.60"}
        demo = careloom(env, "demo", "--exit", "--json")
    assert 0 == demo.returncode, demo.stderr[-3000:]
    runs = json.loads(demo.stdout)["runs"]
    planned = [r for r in runs if r["planner"] is not None]
    assert planned and {"model:scripted-model"} == {r["planner"] for r in planned}
    outreach = [r for r in model.requests if r["tools"][0]["function"]["name"] != "issue_determination"]
    assert len(planned) == len(outreach)  # one request per planned run: no answer needed a repair
    prior_auth = json.loads(demo.stdout)["prior_auth"]
    assert prior_auth and {"model:scripted-model"} == {r["planner"] for r in prior_auth}
    assert len(prior_auth) == len(model.requests) - len(outreach)
    assert {"approve", "deny", "pend"} <= {r["determination"] for r in prior_auth}
    assert all(r["planner_usage"]["prompt_tokens"] > 0 and r["planner_usage"]["estimated_cost_usd"] > 0
               for r in planned)
    assert {"completed", "awaiting_approval"} <= {r["status"] for r in runs}


def test_runs_list_names_the_programs_of_the_catalogue() -> None:
    """`runs list` maps program names to workflow types without importing the workflows: the map is the
    catalogue's."""
    from workflows.programs import PROGRAMS
    from workflows.run_list import PROGRAM_TYPES

    assert {p.name: p.workflow_type for p in PROGRAMS} == PROGRAM_TYPES


def test_runs_list_filters_are_checked_before_the_query() -> None:
    """A value outside the known set never reaches the visibility query; known ones build one query."""
    from datetime import UTC, datetime

    from workflows.run_list import RunListError, RunsFilter, runs_query

    with pytest.raises(RunListError, match="--status 'x\" OR 1' is not a run status"):
        runs_query(RunsFilter(status='x" OR 1'))
    assert ('WorkflowType IN ("MemberOutreachWorkflow") AND CareloomStatus = "completed" AND ExecutionStatus IN '
            '("Running", "Completed") AND StartTime >= "2024-05-01T00:00:00Z"') == runs_query(RunsFilter(
                program="post-discharge-outreach", status="completed", since=datetime(2024, 5, 1, tzinfo=UTC)))
    assert 'ExecutionStatus = "Failed"' in runs_query(RunsFilter(status="failed"))
