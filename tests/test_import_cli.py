"""`careloom import FOLDER --start-outreach` as a user runs it: a real process, the real dev server."""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from tests.bundle_factory import write_bundle_folder
from tests.cli import careloom, clean_env


async def test_a_synthea_folder_imports_and_starts_outreach_once(tmp_path: Path, client: Client, task_queue: str):
    """Bundles import, their discharges get runs on the worker's queue; the same command again starts none."""
    write_bundle_folder(tmp_path / "synthea", 2)
    env = clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state"), TEMPORAL_ADDRESS=client.service_client.config.target_host,
                    CARELOOM_TASK_QUEUE=task_queue, CARELOOM_LOG_FORMAT="json", CARELOOM_LOG_LEVEL="WARNING",
                    CARELOOM_PSEUDONYM_SALT=uuid.uuid4().hex)
    first = careloom(env, "import", str(tmp_path / "synthea"), "--start-outreach", "--json")
    again = careloom(env, "import", str(tmp_path / "synthea"), "--start-outreach", "--json")
    try:
        assert 0 == first.returncode, first.stderr[-2000:]
        report, second = json.loads(first.stdout), json.loads(again.stdout)
        assert (2, 0, 0) == (report["outreach"]["started"], report["outreach"]["existing"], report["outreach"]["failed"])
        assert (0, 2) == (second["outreach"]["started"], second["outreach"]["existing"])
        assert second["unchanged"] == report["inserted"]
    finally:
        for workflow_id in json.loads(first.stdout)["outreach"]["workflow_ids"] if first.returncode == 0 else []:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(workflow_id).terminate("test finished")


def test_a_folder_without_fhir_files_is_refused_with_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    result = careloom(clean_env(CARELOOM_STATE_DIR=str(tmp_path / "state")), "import", str(tmp_path / "nothing"))
    assert 2 == result.returncode
    assert "holds no *.ndjson or *.json files" in result.stdout + result.stderr
