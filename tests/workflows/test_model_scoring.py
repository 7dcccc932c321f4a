"""The learned risk model in an outreach run on the real dev server: the champion's version and digest and the
challenger's shadow score are in the run's history (the risk activity's result); LACE still routes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from learning.registry import GateResult, ModelRegistry
from learning.serving import scorer_from_registry
from runtime.settings import Settings
from store.sql_records import SqlCareRecordStore
from tests.conftest import OPEN_WINDOW
from tests.fhir_factory import make_member
from tests.learning.test_registry import trained_artifacts
from tools.risk import RiskScore
from worker import build_hosts, build_worker
from workflows.outreach_client import start_outreach

RISK_ACTIVITY = "tools.score_readmission_risk"


async def risk_results(client: Client, workflow_id: str) -> list[RiskScore]:
    """The risk activity's results, decoded from the run's history with the client's converter."""
    handle = client.get_workflow_handle(workflow_id)
    scheduled: set[int] = set()
    found: list[RiskScore] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            if event.activity_task_scheduled_event_attributes.activity_type.name == RISK_ACTIVITY:
                scheduled.add(event.event_id)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            if done.scheduled_event_id in scheduled:
                [value] = await client.data_converter.decode(done.result.payloads, [RiskScore])
                found.append(value)
    return found


@pytest.fixture(scope="module")
def registry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("model-scoring")
    registry = ModelRegistry(root / "state")
    for artifact in trained_artifacts(root, ("run-1", "run-2")):
        registry.register(artifact)
    registry.promote("readmission-30d-hgb", "1", gate=lambda _: GateResult(True, "test gate"))
    registry.promote("readmission-30d-hgb", "2", shadow=True)
    return root / "state"


async def _run(client: Client, settings: Settings, store: SqlCareRecordStore, state: Path) -> tuple[str, object]:
    queue = f"test-{uuid.uuid4().hex[:12]}"
    hosts = build_hosts(settings, store, scorer=scorer_from_registry(state))
    member = make_member(store)
    async with build_worker(client, settings, store, task_queue=queue, hosts=hosts):
        handle, started = await start_outreach(
            client, member_id=member.member_id, encounter_id=member.encounter_id, policy=OPEN_WINDOW,
            task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1,
            salt=settings.pseudonym_salt.get_secret_value())
        assert started
        result = await handle.result()
    return handle.id, result


async def test_the_run_records_the_champion_and_the_shadow_score(client: Client, settings: Settings,
                                                                 store: SqlCareRecordStore,
                                                                 registry_state: Path) -> None:
    workflow_id, result = await _run(client, settings, store, registry_state)
    assert result.status == "completed" and result.lace == 5  # type: ignore[attr-defined]  # LACE still routes
    [risk] = await risk_results(client, workflow_id)
    registry = ModelRegistry(registry_state)
    champion = registry.by_alias("readmission-30d-hgb", "champion")
    challenger = registry.by_alias("readmission-30d-hgb", "challenger")
    assert champion is not None and challenger is not None
    assert risk.status == "scored" and risk.lace == 5
    assert risk.model is not None, risk.model_reason
    assert (risk.model.name, risk.model.version, risk.model.digest, risk.model.alias) == (
        "readmission-30d-hgb", "1", champion.digest, "champion")
    assert 0.0 <= risk.model.probability <= 1.0 and risk.model_reason is None
    assert risk.shadow is not None and (risk.shadow.version, risk.shadow.digest) == ("2", challenger.digest)


async def test_a_refused_champion_leaves_lace_and_the_reason_in_history(client: Client, settings: Settings,
                                                                        store: SqlCareRecordStore,
                                                                        tmp_path: Path) -> None:
    """No registry in the worker's state folder: the run completes on LACE and its history says why."""
    workflow_id, result = await _run(client, settings, store, tmp_path / "no-registry")
    assert result.status == "completed"  # type: ignore[attr-defined]
    [risk] = await risk_results(client, workflow_id)
    assert risk.lace == 5 and risk.model is None and risk.shadow is None
    assert risk.model_reason is not None and "LACE alone" in risk.model_reason


async def test_the_reviewer_and_the_audit_see_the_model_and_its_explanation(
        client: Client, settings: Settings, store: SqlCareRecordStore, registry_state: Path) -> None:
    """A high-risk discharge parks for a nurse: the approval item names the champion (version, digest) with its
    explanation in words; the ledger's requested entry records the model; the audit timeline shows both; the
    scores are on record as RiskAssessments."""
    from guardrails.approvals import ApprovalDecision
    from history.audit import audit
    from history.events import read_run
    from store.ledger import DecisionLedger
    from store.connect import configured_database
    from tests.conftest import wait_for_status
    from tests.deciding import decide, ledger_entries
    from tests.fhir_factory import HIGH_RISK

    champion = ModelRegistry(registry_state).by_alias("readmission-30d-hgb", "champion")
    assert champion is not None
    queue = f"test-{uuid.uuid4().hex[:12]}"
    hosts = build_hosts(settings, store, scorer=scorer_from_registry(registry_state))
    member = make_member(store, **HIGH_RISK)
    async with build_worker(client, settings, store, task_queue=queue, hosts=hosts):
        handle, _ = await start_outreach(
            client, member_id=member.member_id, encounter_id=member.encounter_id, policy=OPEN_WINDOW,
            task_queue=queue, initiated_by="care-ops-bot", tool_attempts=1,
            salt=settings.pseudonym_salt.get_secret_value())
        [item] = (await wait_for_status(handle, lambda s: len(s.pending_approvals) == 1)).pending_approvals
        context = item.context
        assert context.risk_model is not None and context.risk_model.startswith(
            f"readmission-30d-hgb v1 (sha256 {champion.digest[:12]}…)")
        assert context.risk_model_ref == f"readmission-30d-hgb/1 sha256:{champion.digest}"
        assert context.risk_explanation and all(": " in line and line[-5] in "+-" for line in context.risk_explanation)
        assert member.member_id not in " ".join(context.risk_explanation)
        await decide(client, handle.id, ApprovalDecision(approval_id=item.approval_id, digest=item.digest,
                                                         decision="approve", approver="rn.kim", role="rn"))
        await handle.result()
    ledger = DecisionLedger(configured_database(settings))
    [requested] = [e for e in await ledger_entries(ledger, handle.id, "approved") if e.event == "requested"]
    assert requested.risk_model == context.risk_model_ref
    report = audit(read_run(await handle.fetch_history()), ledger)
    [model_entry] = [e for e in report.entries if e.kind == "risk_model"]
    assert model_entry.details["model"] == context.risk_model_ref
    assert [c["words"] for c in model_entry.details["explanation"]] == context.risk_explanation
    assert context.risk_explanation[0] in model_entry.summary
    assert any(e.kind == "approval" and e.details.get("risk_model") == context.risk_model_ref for e in report.entries)
    assert report.ledger_mismatches == []
    recorded = {r["method"]["text"] for r in store.find_for_member("RiskAssessment", member.member_id)}
    assert recorded == {"champion", "challenger"}
