"""Canary: members with distinctive identifiers go through outreach on the model planner; nothing leaks.

Everything here is real: the embedded Temporal dev server with its SQLite file, a worker process
started the way operators start it (``python worker.py``, settings from the environment, payload
keys set, JSON logs at DEBUG), the scripted model server on loopback. Afterwards the raw bytes of
Temporal's database, every line the worker logged and every request the model received are scanned
for the canary values: zero hits. The care records store, which is meant to hold them, is the
positive control that proves the scan finds what is there.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from guardrails.approvals import ApprovalDecision
from guardrails.configured import signer
from guardrails.policy import GuardrailPolicy
from history.events import read_run
from runtime.codec import DEVELOPMENT_KEY_FILE, generate_key
from runtime.data_converter import codec_for
from runtime.settings import Settings
from runtime.temporal_client import connect
from runtime.temporal_server import EmbeddedTemporalServer
from store.connect import configured_database
from store.sql_records import SqlCareRecordStore
from tests.cli import careloom, clean_env
from tests.conftest import OPEN_WINDOW, wait_for_status
from tests.databases import database_env
from tests.deciding import decide
from tests.fhir_factory import HIGH_RISK, make_member
from tests.model_server import running_model_server
from tests.net import free_port
from workflows.outreach_client import start_outreach

ROOT = Path(__file__).resolve().parents[2]
CANARIES = {
    "tag in ids and name": "QZXCANARY7",
    "family name": "Vrellquist",
    "given name": "Ozymandra",
    "phone": "617-555-0199",
    "email": "ozymandra.vrellquist@canary.example",
    "street": "77 Canaryfield Way",
    "MRN": "MRN-CNRY-55213",
    "birth date": "1931-07-19",
}


def _canary_member(store: SqlCareRecordStore, n: int, **scenario: object):
    member = make_member(tag=f"{CANARIES['tag in ids and name']}{n}", **scenario)
    patient = next(r for r in member.resources if r["resourceType"] == "Patient")
    patient.update({
        "name": [{"family": CANARIES["family name"], "given": [CANARIES["given name"]]}],
        "birthDate": CANARIES["birth date"],
        "identifier": [{"type": {"text": "MRN"}, "system": "urn:careloom:test:mrn", "value": CANARIES["MRN"]}],
        "telecom": [{"system": "phone", "value": CANARIES["phone"], "use": "mobile"},
                    {"system": "email", "value": CANARIES["email"]}],
        "address": [{"use": "home", "line": [CANARIES["street"]], "city": "Boston", "state": "MA"}],
    })
    store.put_many(member.resources)
    return member


def _hits(blob: bytes) -> dict[str, int]:
    return {label: blob.count(value.encode()) for label, value in CANARIES.items() if value.encode() in blob}


@pytest.mark.slow
async def test_no_canary_identifier_reaches_temporal_logs_or_the_model(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, embedded_port=free_port(), embedded_ui=False, tool_attempts=1,
                        payload_keys=SecretStr(f"canary={generate_key()}"),
                        pseudonym_salt=SecretStr("canary-test-salt-0123456789abcdef"), _env_file=None)
    store = SqlCareRecordStore(configured_database(settings))
    members = [_canary_member(store, 1), _canary_member(store, 2, **HIGH_RISK)]
    log_file = tmp_path / "worker.log"
    with running_model_server() as model, log_file.open("wb") as log_out:
        async with EmbeddedTemporalServer(settings) as server:
            environment = {
                **os.environ,
                "TEMPORAL_ADDRESS": server.address, "CARELOOM_TASK_QUEUE": "canary",
                "CARELOOM_STATE_DIR": str(tmp_path), **database_env(settings.database_location),
                "CARELOOM_PAYLOAD_KEYS": settings.payload_keys.get_secret_value(),
                "CARELOOM_PSEUDONYM_SALT": settings.pseudonym_salt.get_secret_value(),
                "CARELOOM_LOG_FORMAT": "json", "CARELOOM_LOG_LEVEL": "DEBUG",
                "CARELOOM_MODEL": "scripted-model", "CARELOOM_MODEL_BASE_URL": model.url,
                "CARELOOM_MODEL_API_KEY": "sk-canary-test",
            }
            worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=environment,
                                      stdout=log_out, stderr=subprocess.STDOUT)
            try:
                client = await connect(settings.model_copy(update={"temporal_address": server.address}))
                policy: GuardrailPolicy = OPEN_WINDOW
                handles = [(await start_outreach(
                    client, member_id=m.member_id, encounter_id=m.encounter_id, policy=policy, task_queue="canary",
                    initiated_by="care-ops-bot", tool_attempts=1, salt=settings.pseudonym_salt.get_secret_value(),
                ))[0] for m in members]
                status = await wait_for_status(handles[1], lambda s: s.status == "awaiting_approval", timeout=60)
                for pending in status.pending_approvals:
                    await decide(client, handles[1].id, ApprovalDecision(
                        approval_id=pending.approval_id, digest=pending.digest, decision="approve",
                        approver="rn.kim", role="rn"), signer=signer(settings))  # the worker's key file
                results = [await h.result() for h in handles]
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
    # The server has stopped: its database file is complete on disk.
    assert ["completed", "completed"] == [r.status for r in results]
    assert all(r.planner == "model:scripted-model" for r in results)
    assert len(model.requests) >= 2

    temporal_db = b"".join(p.read_bytes() for p in tmp_path.glob("temporal.db*"))
    assert handles[0].id.encode() in temporal_db  # the scan reads the server's real data
    worker_log = log_file.read_bytes()
    assert b"planner.planned" in worker_log  # the worker really logged the planning steps
    model_traffic = b"".join(model.raw) + repr(model.headers).encode()

    assert {} == _hits(temporal_db), "canary values in Temporal's database"
    assert {} == _hits(worker_log), "canary values in the worker's log"
    assert {} == _hits(model_traffic), "canary values sent to the model"
    # Positive control: the care records store holds every canary value, and the scan finds them there.
    records = b"".join(p.read_bytes() for p in tmp_path.glob("records.db*"))
    assert set(CANARIES) == set(_hits(records))


MODEL_TEXT = "Hello from your care team QZXMODELTEXT, how are you feeling since you got home?"


def _own_words(request):  # noqa: ANN001, ANN202
    """The plan the prompt asks for, with a member message in the model's own (distinctive) words."""
    from tests.model_server import follow_the_prompt

    reply = follow_the_prompt(request)
    for call in reply.body["choices"][0]["message"]["tool_calls"]:
        if call["function"]["name"] == "send_outreach":
            call["function"]["arguments"] = json.dumps({**json.loads(call["function"]["arguments"]),
                                                        "message": MODEL_TEXT})
    return reply


@pytest.mark.slow
async def test_the_default_stack_keeps_model_text_out_of_temporal_db_in_plaintext(tmp_path: Path) -> None:
    """No CARELOOM_PAYLOAD_KEYS, the embedded server, `python worker.py` with the model planner: the model's own
    words are sent (after approval) yet absent from the server's database; the development key was made 0600 in
    the state folder, and the CLI (history audit) and codec_for read the run back with it."""
    settings = Settings(state_dir=tmp_path, embedded_port=free_port(), embedded_ui=False, tool_attempts=1,
                        pseudonym_salt=SecretStr("default-stack-salt-0123456789abcdef"), _env_file=None)
    assert settings.payload_keys is None and settings.embedded
    store = SqlCareRecordStore(configured_database(settings))
    member = make_member(store, tag=f"dflt{free_port()}")
    stack_env = clean_env(CARELOOM_STATE_DIR=str(tmp_path), CARELOOM_EMBEDDED_PORT=str(settings.embedded_port),
                          CARELOOM_PSEUDONYM_SALT=settings.pseudonym_salt.get_secret_value(),
                          **database_env(settings.database_location))
    with running_model_server() as model:
        model.default = _own_words
        async with EmbeddedTemporalServer(settings):
            worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, env={
                                          **stack_env, "CARELOOM_TASK_QUEUE": "default-stack",
                                          "CARELOOM_MODEL": "scripted-model", "CARELOOM_MODEL_BASE_URL": model.url,
                                          "CARELOOM_MODEL_API_KEY": "sk-default-stack"})
            try:
                client = await connect(settings)  # the CLI's connection: no TEMPORAL_ADDRESS, no keys
                handle, _ = await start_outreach(
                    client, member_id=member.member_id, encounter_id=member.encounter_id, policy=OPEN_WINDOW,
                    task_queue="default-stack", initiated_by="care-ops-bot", tool_attempts=1,
                    salt=settings.pseudonym_salt.get_secret_value())
                status = await wait_for_status(handle, lambda s: s.status == "awaiting_approval", timeout=60)
                for pending in status.pending_approvals:
                    await decide(client, handle.id, ApprovalDecision(
                        approval_id=pending.approval_id, digest=pending.digest, decision="approve",
                        approver="rn.kim", role=pending.required_role), signer=signer(settings))
                result = await handle.result()
                decoded = read_run(await handle.fetch_history(), codec_for(settings))
                audit = careloom(stack_env, "history", "audit", handle.id, "--json", "--no-ledger")
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=30)
    assert "completed" == result.status and "model:scripted-model" == result.planner
    sent = next(a for a in result.actions if a.tool == "send_outreach")
    assert MODEL_TEXT == store.get(*sent.reference.split("/"))["payload"][0]["contentString"]  # it was sent
    assert 0 == audit.returncode, audit.stderr[-2000:]
    assert handle.id in audit.stdout
    assert any(MODEL_TEXT in c.result.model_dump_json() for c in decoded.calls if c.name == "agents.plan_outreach")

    temporal_db = b"".join(p.read_bytes() for p in tmp_path.glob("temporal.db*"))
    assert handle.id.encode() in temporal_db  # the scan reads the server's real data
    assert 0 == temporal_db.count(b"QZXMODELTEXT"), "the model's text is plaintext in Temporal's database"
    assert 0 == temporal_db.count(member.member_id.encode())
    records = b"".join(p.read_bytes() for p in tmp_path.glob("records.db*"))
    assert records.count(b"QZXMODELTEXT") >= 1  # positive control: the records store holds what was sent
    key_file = tmp_path / DEVELOPMENT_KEY_FILE
    assert 0o600 == stat.S_IMODE(key_file.stat().st_mode)
    assert key_file.read_text().startswith("dev-")
