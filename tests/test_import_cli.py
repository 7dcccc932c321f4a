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
