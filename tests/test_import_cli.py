"""`careloom import FOLDER --start-outreach` as a user runs it: a real process against the real dev server.

The CLI process imports into the test session's state folder and starts runs on this test's task queue,
where the ``task_queue`` fixture's worker (same records store) runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from runtime.settings import Settings
from tests.bundle_factory import synthea_bundle, write_bundle_folder
from tests.cli import careloom, clean_env
from tests.conftest import wait_for_status
from tests.databases import session_env
from tests.net import free_port
from workflows.outreach import MemberOutreachWorkflow
from workflows.outreach_client import outreach_workflow_id


async def test_a_synthea_folder_imports_and_starts_outreach_once(tmp_path: Path, client: Client, settings: Settings,
                                                                  task_queue: str) -> None:
    """Bundles import, their discharges get runs that read the imported records; the same command again
    imports nothing new and starts none (all existing). A discharge past its TCM window is started and counted."""
    folder = tmp_path / "synthea"
    write_bundle_folder(folder, 2)
    late, _, _ = synthea_bundle(discharged_at=datetime.now(UTC) - timedelta(days=10))
    (folder / "patient-late.json").write_text(json.dumps(late))
    env = clean_env(**session_env(settings), TEMPORAL_ADDRESS=client.service_client.config.target_host,
                    CARELOOM_TASK_QUEUE=task_queue, CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING")
    # In a thread: the worker serving these runs shares this event loop.
    first = await asyncio.to_thread(careloom, env, "import", str(folder), "--start-outreach", "--json")
    started: list[str] = json.loads(first.stdout)["outreach"].get("workflow_ids", []) if first.stdout else []
    try:
        assert 0 == first.returncode, first.stderr[-2000:]
        report = json.loads(first.stdout)
        assert (3, 3, 0, 0, 1) == tuple(report["outreach"][k] for k in
                                        ("discharges", "started", "existing", "failed", "tcm_missed"))
        for workflow_id in started:  # each run read its member from the imported records:
            handle = client.get_workflow_handle_for(MemberOutreachWorkflow.run, workflow_id)
            status = await wait_for_status(handle, lambda s: s.lace is not None)
            assert 6 == status.lace  # L2 A3 C1 E0: the stay, the admission and the urn-linked Condition

        again = await asyncio.to_thread(careloom, env, "import", str(folder), "--start-outreach")
        assert 0 == again.returncode, again.stderr[-2000:]
        assert f"0 inserted, 0 updated, {report['inserted']} unchanged, 0 skipped" in again.stdout
        assert "outreach: 3 discharge(s): 0 started, 3 already had a run, 0 failed" in again.stdout
    finally:
        for workflow_id in started:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(workflow_id).terminate("test finished")


def test_start_outreach_without_temporal_imports_and_says_how_to_finish(tmp_path: Path) -> None:
    """Temporal unreachable: the import is kept and reported, exit 2 names the address and the rerun."""
    write_bundle_folder(tmp_path / "synthea", 1)
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"), TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}")
    result = careloom(env, "import", str(tmp_path / "synthea"), "--start-outreach", "--json", timeout=120)

    assert 2 == result.returncode
    assert json.loads(result.stdout)["inserted"] > 0
    assert "cannot reach Temporal at 127.0.0.1" in result.stderr
    assert "run the same command again" in result.stderr


def test_a_folder_without_fhir_files_is_refused_with_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    result = careloom(clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state")), "import", str(tmp_path / "nothing"))
    assert 2 == result.returncode
    assert "holds no *.ndjson or *.json files" in result.stdout + result.stderr


def _inpatient_stays(bundle: dict) -> list[str]:
    return [e["fullUrl"].removeprefix("urn:uuid:") for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Encounter" and e["resource"]["class"]["code"] == "IMP"]


async def test_only_discharges_outreach_can_still_help_are_started_the_rest_listed(
        tmp_path: Path, client: Client, settings: Settings, task_queue: str) -> None:
    """A Synthea-style folder: a 2023 discharge, a deceased member with four stays, a 7,241-day stay and one
    recent discharge. `import --start-outreach` starts two runs (the recent one, the deceased member's latest
    stay, whose run opens one close-episode item) and lists the five others with their reasons; --include-old
    then starts the 2023 one too. Before: all seven started (four close-episode items for one person, a
    2023 check-in, a 20-year "stay")."""
    folder = tmp_path / "synthea"
    folder.mkdir()
    old, _, old_stay = synthea_bundle(discharged_at=datetime(2023, 5, 1, 12, tzinfo=UTC))
    deceased, _, last_stay = synthea_bundle(deceased=True, earlier_stays=3)
    endless, _, endless_stay = synthea_bundle()
    recent, _, recent_stay = synthea_bundle()
    entry = next(e for e in endless["entry"] if e["fullUrl"] == f"urn:uuid:{endless_stay}")
    end = datetime.fromisoformat(entry["resource"]["period"]["end"])
    entry["resource"]["period"]["start"] = (end - timedelta(days=7241)).isoformat()
    for name, bundle in (("old", old), ("deceased", deceased), ("endless", endless), ("recent", recent)):
        (folder / f"{name}.json").write_text(json.dumps(bundle))
    earlier_stays = sorted(set(_inpatient_stays(deceased)) - {last_stay})
    env = clean_env(**session_env(settings), TEMPORAL_ADDRESS=client.service_client.config.target_host,
                    CARELOOM_TASK_QUEUE=task_queue, CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING")
    started: list[str] = []
    try:
        first = await asyncio.to_thread(careloom, env, "import", str(folder), "--start-outreach", "--json")
        assert 0 == first.returncode, first.stderr[-2000:]
        outreach = json.loads(first.stdout)["outreach"]
        started += outreach["workflow_ids"]
        assert (7, 2, 5) == (outreach["discharges"], outreach["started"], outreach["held"])
        assert {"too_old": 1, "deceased_other_stay": 3, "implausible_stay": 1} == outreach["held_by_reason"]
        held = {h["discharge"].removeprefix("Encounter/"): h["reason"] for h in outreach["not_started"]}
        assert {old_stay: "too_old", endless_stay: "implausible_stay",
                **{e: "deceased_other_stay" for e in earlier_stays}} == held
        salt = settings.pseudonym_salt.get_secret_value()
        patient = {name: next(e["fullUrl"].removeprefix("urn:uuid:") for e in bundle["entry"]
                              if e["resource"]["resourceType"] == "Patient")
                   for name, bundle in (("deceased", deceased), ("recent", recent), ("old", old))}
        last_run = outreach_workflow_id(patient["deceased"], last_stay, salt)
        assert {last_run, outreach_workflow_id(patient["recent"], recent_stay, salt)} == set(started)
        status = await wait_for_status(client.get_workflow_handle_for(MemberOutreachWorkflow.run, last_run),
                                       lambda s: s.pending_approvals)
        [item] = status.pending_approvals  # one close-episode item for the person, not four
        assert ("create_task", "close-care-episode") == (item.tool, item.arguments.kind)

        text = await asyncio.to_thread(careloom, env, "import", str(folder), "--start-outreach")
        assert 0 == text.returncode, text.stderr[-2000:]
        assert "outreach: 7 discharge(s): 0 started, 2 already had a run" in text.stdout
        assert "outreach: 5 discharge(s) not started: 3 earlier stays of a deceased member, 1 implausible " \
               "stays, 1 older than the lookback (--include-old starts them)" in " ".join(text.stdout.split())
        assert f"not started Encounter/{old_stay} (too_old): discharged" in text.stdout

        again = await asyncio.to_thread(careloom, env, "import", str(folder), "--start-outreach", "--include-old",
                                        "--json")
        assert 0 == again.returncode, again.stderr[-2000:]
        outreach = json.loads(again.stdout)["outreach"]
        started += outreach["workflow_ids"]
        assert [outreach_workflow_id(patient["old"], old_stay, salt)] == outreach["workflow_ids"]
        assert {"deceased_other_stay": 3, "implausible_stay": 1} == outreach["held_by_reason"]
    finally:
        for workflow_id in started:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(workflow_id).terminate("test finished")
