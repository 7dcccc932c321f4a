"""Payload encryption: AES-256-GCM codec, key rotation, wrong keys, and ciphertext-only histories on the server."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from history.events import read_run
from runtime.codec import (
    ENCODING,
    PayloadEncryptionCodec,
    PayloadKeyError,
    generate_key,
    parse_keys,
)
from runtime.errors import ConfigurationError
from runtime.plugin import CareloomPlugin
from tests.conftest import OPEN_WINDOW
from tests.fhir_factory import make_member
from worker import build_worker
from workflows.outreach_client import start_outreach

PLAIN = [Payload(metadata={"encoding": b"json/plain"}, data=b'{"member_id":"pt-canary-1234"}')]


async def test_round_trip_and_key_id_in_metadata() -> None:
    """Encrypted payloads carry the key id, hide the plaintext, and decrypt back exactly."""
    codec = PayloadEncryptionCodec(*parse_keys(f"k1={generate_key()}"))
    sealed = await codec.encode(PLAIN)
    assert (ENCODING, b"k1") == (sealed[0].metadata["encoding"], sealed[0].metadata["encryption-key-id"])
    assert b"pt-canary-1234" not in sealed[0].SerializeToString()
    assert PLAIN == await codec.decode(sealed)


async def test_rotation_writes_with_the_new_key_and_still_reads_old_payloads() -> None:
    """After rotation new writes use the new key id; payloads sealed with the old key still decrypt."""
    old_key, new_key = generate_key(), generate_key()
    before = PayloadEncryptionCodec(*parse_keys(f"2026-10={old_key}"))
    after = PayloadEncryptionCodec(*parse_keys(f"2026-11={new_key},2026-10={old_key}"))
    old_payloads = await before.encode(PLAIN)
    assert b"2026-11" == (await after.encode(PLAIN))[0].metadata["encryption-key-id"]
    assert PLAIN == await after.decode(old_payloads)


async def test_missing_or_wrong_key_is_a_clear_error() -> None:
    """A payload sealed with an unknown key id, or the wrong material, names the key and the fix."""
    sealed = await PayloadEncryptionCodec(*parse_keys(f"a={generate_key()}")).encode(PLAIN)
    with pytest.raises(PayloadKeyError, match="key 'a', which is not configured"):
        await PayloadEncryptionCodec(*parse_keys(f"b={generate_key()}")).decode(sealed)
    with pytest.raises(PayloadKeyError, match="does not decrypt with key 'a'"):
        await PayloadEncryptionCodec(*parse_keys(f"a={generate_key()}")).decode(sealed)


def test_bad_key_specs_are_refused() -> None:
    """Keys that are not base64 or not 32 bytes fail at start with the variable's name."""
    with pytest.raises(ConfigurationError, match="not valid base64"):
        parse_keys("k=not base64!")
    with pytest.raises(ConfigurationError, match="AES-256 needs 32"):
        parse_keys(f"k={base64.b64encode(b'short').decode()}")
    with pytest.raises(ConfigurationError, match="must look like"):
        parse_keys("=abc")


async def test_histories_on_the_server_hold_only_ciphertext(
    env: WorkflowEnvironment, settings, store
) -> None:
    """A run through an encrypting client and worker leaves no plaintext payload in Temporal's history."""
    codec = PayloadEncryptionCodec(*parse_keys(f"k1={generate_key()}"))
    encrypting = await Client.connect(env.client.service_client.config.target_host,
                                      plugins=[CareloomPlugin(codec=codec)])
    member = make_member(store)
    queue = f"codec-{uuid.uuid4().hex[:8]}"
    async with build_worker(encrypting, settings, store, task_queue=queue):
        handle, _ = await start_outreach(encrypting, member_id=member.member_id, encounter_id=member.encounter_id,
                                         policy=OPEN_WINDOW, task_queue=queue, tool_attempts=1,
                                         salt=settings.pseudonym_salt.get_secret_value())
        result = await handle.result()
    assert "completed" == result.status

    raw = await env.client.get_workflow_handle(handle.id).fetch_history()  # no codec: what the server stores
    encodings = set()
    for event in raw.events:
        attributes = event.WhichOneof("attributes")
        for field in ("input", "result"):
            holder = getattr(getattr(event, attributes), field, None)
            if holder is not None and hasattr(holder, "payloads"):
                encodings |= {p.metadata["encoding"] for p in holder.payloads}
    assert {ENCODING} == encodings
    text = json.dumps(raw.to_json_dict())
    assert "LACE" not in text and "post-discharge" not in text
    assert 5 == read_run(raw, codec).facts.lace
    with pytest.raises(PayloadKeyError):
        read_run(raw, PayloadEncryptionCodec(*parse_keys(f"k1={generate_key()}")))
