"""Two `python worker.py` processes on one task queue, as a deployment runs them, against the test dev server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from feeds.discharges import discharge_of, start_discharges
from guardrails.configured import outreach_policy
from tests.conftest import wait_for_status
from tests.databases import session_env
from tests.fhir_factory import make_member
from workflows.outreach import MemberOutreachWorkflow

ROOT = Path(__file__).resolve().parents[2]
SETTLED = {"completed", "awaiting_approval", "deferred", "needs_attention", "ineligible", "not_discharged"}


@pytest.mark.slow
async def test_two_worker_processes_share_one_queue(client: Client, settings, store) -> None:
    queue = f"test-two-{uuid.uuid4().hex[:8]}"
    ours = settings.model_copy(update={"task_queue": queue})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARELOOM_", "TEMPORAL_"))}
    env.update(TEMPORAL_ADDRESS=client.service_client.config.target_host, **session_env(settings),
               CARELOOM_TASK_QUEUE=queue, CARELOOM_LOG_LEVEL="WARNING", CARELOOM_LOG_FORMAT="json",
               CARELOOM_PSEUDONYM_SALT=settings.pseudonym_salt.get_secret_value())
    workers = [subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for _ in range(2)]
    try:
        members = [make_member(store) for _ in range(20)]
        policy = outreach_policy(ours)
        found = [discharge_of(store.get("Encounter", m.encounter_id), policy, ours.plan_time_zone) for m in members]
        report = await start_discharges(client, ours, found, trigger="cli")
        assert (20, 0) == (len(report.started), len(report.failed))
        statuses = await asyncio.gather(*(wait_for_status(
            client.get_workflow_handle(w), lambda s: s.status in SETTLED, timeout=120,
            query=MemberOutreachWorkflow.status) for w in report.started))
        assert all(s.status in SETTLED for s in statuses)
        runs = Counter([e.id async for e in client.list_workflows(f"TaskQueue = '{queue}'")])
        assert 20 == len(runs) and {1} == set(runs.values())
        alive = [w.poll() is None for w in workers]
        assert [True, True] == alive, [w.stderr.read().decode()[-2000:] for w in workers if w.poll() is not None]
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.wait(timeout=30)
        async for execution in client.list_workflows(f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"):
            with contextlib.suppress(Exception):
                await client.get_workflow_handle(execution.id).terminate("test finished")
    assert all(w.returncode == 0 for w in workers), [(w.returncode, w.stderr.read().decode()[-3000:])
                                                     for w in workers if w.returncode != 0]


def test_the_deployment_manifest_is_valid_yaml_and_names_every_part() -> None:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "careloom.yaml").read_text()) if d]
    commands = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["command"]
                for d in docs if d["kind"] == "Deployment"}
    assert ["python", "worker.py"] == commands["careloom-worker"]
    assert ["careloom", "listen", "adt"] == commands["careloom-adt"][:3]
    assert ["careloom", "api"] == commands["careloom-api"]
