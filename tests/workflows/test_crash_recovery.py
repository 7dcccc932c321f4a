"""A real worker process killed with SIGKILL while a run waits for approval: nothing is lost or redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from guardrails.approvals import ApprovalDecision
from runtime.settings import Settings
from tests.conftest import OPEN_WINDOW, wait_for_status
from tests.databases import session_env
from tests.deciding import decide
from tests.fhir_factory import HIGH_RISK, make_member
from workflows.outreach_client import start_outreach

ROOT = Path(__file__).resolve().parents[2]


def start_worker_process(env: WorkflowEnvironment, settings: Settings, queue: str) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "CARELOOM_TASK_QUEUE": queue,
        **session_env(settings),
        "CARELOOM_LOG_FORMAT": "json",
    }
    return subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
async def test_run_survives_a_killed_worker_and_no_completed_activity_runs_again(
    env: WorkflowEnvironment, client: Client, settings: Settings, store
) -> None:
    """SIGKILL the worker while a care plan waits for an RN; a new worker finishes the run exactly once."""
    queue = f"crash-{uuid.uuid4().hex[:10]}"
    member = make_member(store, **HIGH_RISK)
    first = start_worker_process(env, settings, queue)
    second = None
    try:
        handle, _ = await start_outreach(client, member_id=member.member_id, encounter_id=member.encounter_id,
                                         policy=OPEN_WINDOW, task_queue=queue, initiated_by="care-ops-bot",
                                         tool_attempts=1, salt=settings.pseudonym_salt.get_secret_value())
        status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval", timeout=60)
        first.send_signal(signal.SIGKILL)
        assert -signal.SIGKILL == first.wait(timeout=10)

        second = start_worker_process(env, settings, queue)
        [pending] = status.pending_approvals
        await decide(client, handle.id, ApprovalDecision(
            approval_id=pending.approval_id, digest=pending.digest, decision="approve", approver="rn.kim",
            role="rn"))
        result = await handle.result()
        second.send_signal(signal.SIGTERM)
        assert 0 == second.wait(timeout=30), second.stderr.read().decode()[-2000:] if second.stderr else ""
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    assert "completed" == result.status
    history = await handle.fetch_history()
    scheduled = Counter(e.activity_task_scheduled_event_attributes.activity_type.name
                        for e in history.events if e.HasField("activity_task_scheduled_event_attributes"))
    assert {
        "tools.lookup_member": 1, "tools.get_clinical_context": 1, "tools.check_eligibility": 1,
        "tools.score_readmission_risk": 1, "agents.plan_outreach": 1, "tools.create_task": 1,
        "tools.send_outreach": 1, "tools.draft_care_plan": 1,
        "ledger.append": 2,  # the approval request, then the decision
    } == dict(scheduled)
    attempts = [e.activity_task_started_event_attributes.attempt
                for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert [1] * 10 == attempts
    assert (1, 1, 1) == tuple(len(store.find_for_member(t, member.member_id))
                              for t in ("Task", "Communication", "CarePlan"))
