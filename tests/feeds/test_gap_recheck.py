"""Care-gap closure end to end as an operator runs it, on the real dev server, worker and records store: a
campaign finds a diabetic with no HbA1c this year, starts the run, the run reminds the member and gives the care
coordinator and the PCP's office their Tasks, then monitors; a lab feed's NDJSON is imported with
``careloom import --recheck-gaps`` (a real subprocess), the run is asked to re-evaluate, the gap closes, the run
ends ``gaps-closed`` with the gap closed after careloom's outreach, and ``careloom gaps report`` counts it. A
member with no running run is counted, not an error; a rerun of the import asks again harmlessly."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from temporalio.client import Client

from feeds.gap_campaign import CampaignInput, CareGapCampaignWorkflow
from runtime.settings import Settings
from store.importer import MEASURE_DATA_TYPES
from store.sql_records import SqlCareRecordStore
from tests.cli import careloom, clean_env
from tests.databases import database_env, fresh_location
from tests.fhir_factory import make_member
from tests.workflows.test_care_gap import CMS122, _diabetic, _hba1c
from tools.measure_data import MEASURE_TYPES
from worker import build_worker
from workflows.care_gap import CareGapWorkflow
from workflows.care_gap_client import care_gap_workflow_id
from workflows.care_gap_models import CareGapResult

YEAR = datetime.now(UTC).year  # --recheck-gaps reaches this calendar year's runs (the campaign's default period)


def test_the_importer_names_what_the_measures_read() -> None:
    assert set(MEASURE_TYPES) == MEASURE_DATA_TYPES


async def _monitoring(client: Client, workflow_id: str, timeout: float = 60.0) -> None:
    handle = client.get_workflow_handle_for(CareGapWorkflow.run, workflow_id)
    for _ in range(int(timeout / 0.2)):
        try:
            status = await handle.query(CareGapWorkflow.status)
            if status.status == "monitoring":
                return
        except Exception:  # noqa: BLE001, S110 - the run may not have had its first workflow task yet
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{workflow_id} never reached monitoring")


async def test_a_campaign_gap_closes_when_a_lab_import_arrives(client: Client, settings: Settings,
                                                               tmp_path: Path) -> None:
    location = fresh_location(tmp_path)
    store = SqlCareRecordStore(location)
    open_hours = settings.model_copy(update={"contact_window_start_hour": 0, "contact_window_end_hour": 24})
    queue = f"test-gap-recheck-{uuid.uuid4().hex[:8]}"
    member = _diabetic(store).member_id
    bystander = make_member(store, birth_date=date(1960, 3, 1)).member_id  # no diabetes: no gap, no run
    salt = settings.pseudonym_salt.get_secret_value()
    workflow_id = care_gap_workflow_id(member, date(YEAR, 1, 1), date(YEAR, 12, 31), salt)
    env = clean_env(**database_env(location), CARELOOM_STATE_DIR=str(tmp_path),
                    TEMPORAL_ADDRESS=client.service_client.config.target_host, CARELOOM_PSEUDONYM_SALT=salt)
    try:
        async with build_worker(client, open_hours, store, task_queue=queue):
            progress = await client.execute_workflow(
                CareGapCampaignWorkflow.run, CampaignInput(measure_ids=[CMS122]),
                id=f"gap-recheck-campaign-{uuid.uuid4().hex[:8]}", task_queue=queue)
            assert (2, 1, 1) == (progress.evaluated, progress.open, progress.started)
            await _monitoring(client, workflow_id)
            tasks = {t["code"]["coding"][0]["code"] for t in store.find_for_member("Task", member)}
            assert {"gap-closure-scheduling", "pcp-gap-notification"} <= tasks

            lab = tmp_path / "lab-feed"
            lab.mkdir()
            result = {**_hba1c(member, 6.9), "effectiveDateTime": f"{YEAR}-{datetime.now(UTC):%m-%d}T08:00:00Z"}
            other = {**_hba1c(bystander, 5.1), "id": f"a1c-{bystander}"}
            (lab / "Observation.ndjson").write_text(json.dumps(result) + "\n" + json.dumps(other) + "\n")
            done = await asyncio.to_thread(careloom, env, "import", str(lab), "--recheck-gaps", "--json",
                                           timeout=180)
            assert 0 == done.returncode, done.stderr
            assert {"signalled": 1, "no_run": 1, "failed": []} == json.loads(done.stdout)["care_gaps"]

            ended = CareGapResult.model_validate(
                await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), 60))
            again = await asyncio.to_thread(careloom, env, "import", str(lab), "--recheck-gaps", "--json",
                                            timeout=180)
            assert 0 == again.returncode, again.stderr
            assert {"signalled": 0, "no_run": 2, "failed": []} == json.loads(again.stdout)["care_gaps"]
    finally:
        store.close()
    assert ("completed", "gaps-closed", [CMS122], [CMS122]) == (
        ended.status, ended.ended_by, ended.closed, ended.closed_after_outreach)
    report = careloom(env, "gaps", "report", "--period", str(YEAR), "--measure", CMS122, "--json", timeout=180)
    assert 0 == report.returncode, report.stderr
    [row] = json.loads(report.stdout)["measures"]
    assert (1, 1) == (row["closed_gaps"], row["closed_after_outreach"])
