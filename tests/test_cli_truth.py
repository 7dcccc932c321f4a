"""Issue 21: the CLI tells the truth, fast — through the real `careloom` command against `careloom up` (the embedded
dev server, a worker and the API in their own processes), as a user runs them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from guardrails.configured import outreach_policy
from store.connect import configured_database
from tests.cli import CARELOOM, ROOT, careloom, clean_env
from tests.net import free_port

pytestmark = pytest.mark.slow  # one `careloom up` for the module (~15 s to start on this machine)


@dataclass
class Up:
    env: dict[str, str]
    state: Path
    process: subprocess.Popen
    stderr: Path
    import_stderr: str

    def settings(self):  # noqa: ANN201 - the CLI's own settings, for the store and the client
        from runtime.settings import Settings

        return Settings(state_dir=self.state, embedded_port=int(self.env["CARELOOM_EMBEDDED_PORT"]), _env_file=None)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    """A fresh state folder with the sample imported (at log level INFO), then `careloom up` until the worker
    answers."""
    home = tmp_path_factory.mktemp("cli-truth")
    state = home / "state"
    env = clean_env(CARELOOM_STATE_DIR=str(state), CARELOOM_EMBEDDED_PORT=str(free_port()),
                    CARELOOM_EMBEDDED_UI_PORT=str(free_port()), CARELOOM_API_PORT=str(free_port()),
                    CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="INFO", CARELOOM_TOOL_ATTEMPTS="1")
    imported = careloom(env, "import", str(ROOT / "sample_data" / "fhir_r4"))
    assert 0 == imported.returncode, imported.stderr[-2000:]
    stderr = home / "up.stderr"
    with stderr.open("w") as sink:
        process = subprocess.Popen([*CARELOOM, "up"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sink,
                                   start_new_session=True)
    running = Up(env=env, state=state, process=process, stderr=stderr, import_stderr=imported.stderr)
    try:
        deadline = time.monotonic() + 120
        while careloom(env, "runs", "list").returncode != 0:
            assert time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(0.5)
        yield running
    finally:
        running.stop()


def _member(up: Up, **options: object):  # noqa: ANN202
    from store.sql_records import SqlCareRecordStore
    from tests.fhir_factory import make_member

    db = configured_database(up.settings())
    try:
        return make_member(SqlCareRecordStore(db), **options)
    finally:
        db.close()


def _json(result: subprocess.CompletedProcess) -> object:
    assert 0 == result.returncode, result.stderr[-2000:]
    return json.loads(result.stdout)


def _wait_closed(up: Up, workflow_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        report = _json(careloom(up.env, "outreach", "status", workflow_id, "--json"))
        if report["execution"] != "running" or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


async def _start_failing(up: Up, program: str) -> str:
    """A run whose member the records store does not hold, started past the CLI's checks (as the ADT feed or
    a Temporal user could): it FAILS in its first step."""
    from runtime.temporal_client import connect
    from workflows.outreach_client import start_outreach

    cfg = up.settings()
    client = await connect(cfg)
    if program == "outreach":
        handle, _ = await start_outreach(client, member_id="nobody-21", encounter_id="nothing-21",
                                         policy=outreach_policy(cfg), task_queue=cfg.task_queue,
                                         salt=cfg.pseudonym_salt.get_secret_value(), tool_attempts=1)
        return handle.id
    from tools.pas_models import PriorAuthSubmission, RequestedService
    from workflows.prior_auth_models import PriorAuthInput
    from workflows.prior_auth import PriorAuthWorkflow

    submission = PriorAuthSubmission(
        claim_id="claim-21", member_id="nobody-21", coverage_id="cov-21", provider_id="prov-21",
        priority="standard", received_at=datetime.now(UTC), service_date=date.today(),
        items=[RequestedService(sequence=1, code="97110", system="http://www.ama-assn.org/go/cpt", quantity=1)],
        note_ids=[])
    handle = await client.start_workflow(PriorAuthWorkflow.run, PriorAuthInput(submission=submission, tool_attempts=1),
                                         id="prior-auth-issue21-failing", task_queue=cfg.task_queue)
    return handle.id


def test_no_library_setup_noise_and_the_server_address_is_logged(up: Up) -> None:
    """At log level INFO, `careloom import` prints no alembic "setup plugin" lines (there were 7), and `careloom up`
    logs the embedded server's address as it is (the PHI filter used to print it as [REDACTED])."""
    assert "alembic" not in up.import_stderr and "setup plugin" not in up.import_stderr, up.import_stderr
    deadline = time.monotonic() + 15
    while True:  # the line is written by `careloom up`'s own process: read until it is there (or time is up)
        text = up.stderr.read_text()
        ready = [line for line in (json.loads(row) for row in text.splitlines() if row.startswith("{"))
                 if line.get("event") == "temporal_server.ready"]
        if ready or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [f"127.0.0.1:{up.env['CARELOOM_EMBEDDED_PORT']}"] == [line["address"] for line in ready], text[-3000:]


def test_outreach_start_checks_the_member_and_the_encounter_first(up: Up) -> None:
    """An unknown member, an unknown encounter and another member's encounter: exit 2 naming the id and the fix,
    and no run is started (`runs list` unchanged)."""
    member, other = _member(up), _member(up)
    before = _json(careloom(up.env, "runs", "list", "--json", "--page-size", "1000"))["runs"]
    cases = {("nobody-x", member.encounter_id): "no Patient 'nobody-x' in the care records store",
             (member.member_id, "nothing-x"): "no Encounter 'nothing-x' in the care records store",
             (member.member_id, other.encounter_id): f"is not a stay of Patient '{member.member_id}'"}
    for (patient, encounter), message in cases.items():
        refused = careloom(up.env, "outreach", "start", "--member", patient, "--encounter", encounter)
        assert 2 == refused.returncode, refused.stdout
        assert message in " ".join(refused.stderr.split()), refused.stderr
    after = _json(careloom(up.env, "runs", "list", "--json", "--page-size", "1000"))["runs"]
    assert len(before) == len(after)


def test_a_failed_outreach_run_says_failed_with_its_failure_and_follow_up(up: Up) -> None:
    """`outreach status` of a run that FAILED (unknown member) says failed, MemberNotFound and the message, the
    status word it last published, and the follow-up Task a person got; `runs list --status failed` lists it."""
    workflow_id = asyncio.run(_start_failing(up, "outreach"))
    report = _wait_closed(up, workflow_id)
    assert ("failed", "failed") == (report["execution"], report["status"])
    assert {"type": "MemberNotFound",
            "message": "no Patient with id 'nobody-21' in the care records store"} == report["failure"]
    assert report["follow_up_task"].startswith("Task/")
    text = careloom(up.env, "outreach", "status", workflow_id)
    assert 0 == text.returncode, text.stderr
    assert (f"{workflow_id}  status=failed (MemberNotFound: no Patient with id 'nobody-21' in the care records "
            "store)") == text.stdout.splitlines()[0]
    assert f"follow-up for a person: {report['follow_up_task']}" in text.stdout
    failed = _json(careloom(up.env, "runs", "list", "--status", "failed", "--json"))["runs"]
    assert workflow_id in {r["workflow_id"] for r in failed}
    assert {"failed"} == {r["status"] for r in failed}


def test_a_failed_prior_auth_run_says_failed_in_um_status(up: Up) -> None:
    """`um status` of a prior-authorization run that FAILED names the failure, not its last status word."""
    workflow_id = asyncio.run(_start_failing(up, "prior-auth"))
    deadline = time.monotonic() + 60
    while (report := _json(careloom(up.env, "um", "status", workflow_id, "--json")))["execution"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    # The member lookup and the evidence review run at once: whichever finds its record missing first is named.
    failure = report["failure"]["type"]
    assert ("failed", True) == (report["status"], failure in {"MemberNotFound", "PriorAuthRequestNotFound"})
    text = careloom(up.env, "um", "status", workflow_id)
    assert text.stdout.startswith(f"{workflow_id}  status=failed ({failure}: "), text.stdout


def test_status_and_runs_list_show_the_discharge_and_tcm_due(up: Up) -> None:
    """A run's discharge and TCM due dates (search attributes set with the member) appear in `outreach status`
    and `runs list`; `runs list` filters by program, status and start, and pages with a token."""
    members = [_member(up), _member(up)]
    ids = []
    for member in members:
        started = careloom(up.env, "outreach", "start", "--member", member.member_id, "--encounter",
                           member.encounter_id, "--json")
        ids.append(_json(started)["workflow_id"])
    for workflow_id in ids:
        deadline = time.monotonic() + 60
        while (report := _json(careloom(up.env, "outreach", "status", workflow_id, "--json")))["tcm_due"] is None:
            assert time.monotonic() < deadline, report
            time.sleep(0.5)
        assert datetime.fromisoformat(report["tcm_due"]) > datetime.fromisoformat(report["discharged_at"])
    text = careloom(up.env, "outreach", "status", ids[0]).stdout
    assert re.search(r"discharged=\d{4}-\d\d-\d\d \d\d:\d\d UTC  TCM due=\d{4}-\d\d-\d\d \d\d:\d\d UTC", text), text

    rows = _json(careloom(up.env, "runs", "list", "--program", "post-discharge-outreach", "--json",
                          "--page-size", "1000"))["runs"]
    mine = {r["workflow_id"]: r for r in rows if r["workflow_id"] in ids}
    assert set(ids) == set(mine)
    assert all(r["tcm_due"] and r["discharged_at"] and r["member_pseudonym"] for r in mine.values())
    assert {"post-discharge-outreach"} == {r["program"] for r in rows}

    first = _json(careloom(up.env, "runs", "list", "--page-size", "1", "--json"))
    second = _json(careloom(up.env, "runs", "list", "--page-size", "1", "--page-token", first["next_page_token"],
                            "--json"))
    assert 1 == len(first["runs"]) == len(second["runs"])
    assert first["runs"][0]["workflow_id"] != second["runs"][0]["workflow_id"]
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert [] == _json(careloom(up.env, "runs", "list", "--since", tomorrow, "--json"))["runs"]

    for bad, named in ((["--status", "finished"], "--status 'finished' is not a run status"),
                       (["--program", "x"], "--program 'x' is not a program"),
                       (["--since", "May 1"], "--since 'May 1' is not a date"),
                       (["--page-token", "%%%"], "--page-token is not a token the previous page"),
                       (["--page-token", "bm90LWEtdG9rZW4"], "--page-token is not a token the previous page"),
                       (["--status", "failed", "--page-token", first["next_page_token"]], "(same --program, --status")):
        refused = careloom(up.env, "runs", "list", *bad)
        assert 2 == refused.returncode and named in " ".join(refused.stderr.split()), (bad, refused.stderr)


def test_output_is_plain_and_unwrapped_when_stdout_is_not_a_terminal(up: Up) -> None:
    """Piped, `runs list` and `approvals list` print each workflow id whole on its row (rich used to fold
    them into 8-character columns at its default 80-column width), with no colour codes."""
    _member(up)
    listed = careloom(up.env, "runs", "list")
    rows = _json(careloom(up.env, "runs", "list", "--json"))["runs"]
    assert rows
    for row in rows:
        assert any(row["workflow_id"] in line and row["status"] in line for line in listed.stdout.splitlines()), \
            listed.stdout
    assert "\x1b[" not in listed.stdout
    approvals = careloom(up.env, "approvals", "list")
    for item in _json(careloom(up.env, "approvals", "list", "--json")):
        assert any(item["workflow_id"] in line and item["approval_id"] in line
                   for line in approvals.stdout.splitlines()), approvals.stdout


def test_outreach_status_loads_no_workflow_code(up: Up) -> None:
    """`outreach status` imports neither LangGraph nor a workflow module (cli.main used to import cli.demo, so
    every workflow and LangGraph, on every command: most of the seconds each status took)."""
    workflow_id = asyncio.run(_start_failing(up, "outreach"))
    shown = subprocess.run([*CARELOOM[:1], "-X", "importtime", *CARELOOM[1:], "outreach", "status", workflow_id],
                           cwd=ROOT, env=up.env, capture_output=True, text=True, timeout=120)
    assert 0 == shown.returncode, shown.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in shown.stderr.splitlines() if line.startswith("import time")}
    assert "cli.outreach" in imported
    assert not {"langgraph", "workflows.outreach", "agents.outreach_graph", "cli.demo"} & imported


def test_invalid_fhir_is_described_as_r4_in_words(up: Up, tmp_path: Path) -> None:
    """Validation problems say "R4" (the input's version, not the R4B models that check it) and call an empty
    string an empty string, never a raw regular expression."""
    folder = tmp_path / "bulk"
    folder.mkdir()
    (folder / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "p-21", "gender": ""}) + "\n")
    (folder / "Condition.ndjson").write_text(json.dumps({
        "resourceType": "Condition", "id": "c-21", "subject": {"reference": "Patient/p-21"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": ""}]}}) + "\n")
    report = json.loads(careloom(up.env, "import", str(folder), "--json").stdout)
    problems = " ".join(report["problems"])
    assert 2 == len(report["problems"]), problems
    assert "Patient is not valid FHIR R4: gender: is an empty string" in problems
    assert "Condition is not valid FHIR R4: code.coding.0.code: is an empty string" in problems
    assert "R4B" not in problems and "^[^" not in problems and "pattern" not in problems


def test_status_of_a_closed_run_needs_no_worker(up: Up) -> None:
    """With no worker polling (only the server, on the same database), a completed or failed run's status answers
    at once from its close event (a query used to wait for Temporal's 30 s timeout, then fail)."""
    workflow_id = asyncio.run(_start_failing(up, "outreach"))
    _wait_closed(up, workflow_id)
    up.stop()
    port = up.env["CARELOOM_EMBEDDED_PORT"]
    from runtime.temporal_server import temporal_binary

    server = subprocess.Popen([str(temporal_binary()), "server", "start-dev", "--db-filename",
                               str(up.state / "temporal.db"), "--ip", "127.0.0.1", "--port", port, "--headless",
                               "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while careloom(up.env, "runs", "list").returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        began = time.monotonic()
        shown = careloom(up.env, "outreach", "status", workflow_id, "--json", timeout=60)
        seconds = time.monotonic() - began
        assert ("failed", "MemberNotFound") == (json.loads(shown.stdout)["status"],
                                                json.loads(shown.stdout)["failure"]["type"])
        assert seconds < 15, seconds  # far below the 30 s query timeout, even on a loaded machine
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
