"""Logs carry no PHI: PHI fields are dropped and phone, email, SSN and MRN patterns are masked."""

from __future__ import annotations

import io
import json
import logging

import structlog

from agents.deidentify import Deidentifier
from runtime.logging import REDACTED, configure_logging, redact_phi


def test_redact_phi_drops_fields_and_masks_patterns() -> None:
    """Names and birth dates are removed; a phone number inside free text is masked; ids stay."""
    event = redact_phi(None, "info", {
        "event": "tool.lookup_member", "workflow_id": "outreach-pt-1-enc-2", "name": "Zoey Barnes",
        "birthDate": "1980-03-21", "detail": "call (508) 893-9510 or zoey@example.org, MRN POP-000209",
        "nested": {"telecom": "(508) 893-9510", "count": 2},
    })
    assert {"event": "tool.lookup_member", "workflow_id": "outreach-pt-1-enc-2", "name": REDACTED,
            "birthDate": REDACTED, "detail": f"call {REDACTED} or {REDACTED}, {REDACTED}",
            "nested": {"telecom": REDACTED, "count": 2}} == event


def test_logs_and_the_model_brief_follow_the_same_phi_rules() -> None:
    """Every phone spelling the de-identifier tokenises is masked in logs too, and key spellings are one key."""
    text = "call 5551234567 or +1 555.123.4567 or (508) 893-9510"
    event = redact_phi(None, "info", {"event": "x", "detail": text, "postal-code": "01730", "memberName": "Zoey"})
    assert {"event": "x", "detail": f"call {REDACTED} or {REDACTED} or {REDACTED}", "postal-code": REDACTED,
            "memberName": REDACTED} == event
    assert "call [PHONE_1] or [PHONE_2] or [PHONE_3]" == Deidentifier().redact_text(text)


def test_configured_logging_redacts_structlog_and_stdlib_records() -> None:
    """Both structlog events and stdlib records (Temporal's own logs) go through the redaction."""
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    structlog.get_logger("t").info("member contacted", phone="(508) 555-0100", member="mbr-abc")
    logging.getLogger("temporalio.test").warning("activity failed for 508-555-0100")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [REDACTED, "mbr-abc"] == [lines[0]["phone"], lines[0]["member"]]
    assert f"activity failed for {REDACTED}" == lines[1]["event"]
    assert "555-0100" not in out.getvalue()


def test_http_client_loggers_never_log_requests_even_at_debug() -> None:
    """openai/httpx log whole request bodies (the model's messages) at DEBUG; careloom keeps them at WARNING."""
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    logging.getLogger("openai._base_client").debug("Request options: %s", {"messages": "2024-03-05 admitted"})
    logging.getLogger("careloom.test").debug("kept")
    assert "2024-03-05" not in stream.getvalue() and "kept" in stream.getvalue()


def test_infrastructure_addresses_are_logged_and_postal_addresses_are_not() -> None:
    """A network endpoint under "address" (the Temporal server's host:port, a URL, an IP) is infrastructure and
    logged as it is (it was [REDACTED]); a postal address under the same key is still dropped."""
    for endpoint in ("127.0.0.1:7233", "temporal.internal:7233", "https://ns.tmprl.cloud:7233", "10.0.0.7",
                     "[::1]:7233"):
        assert endpoint == redact_phi(None, "info", {"event": "x", "address": endpoint})["address"]
    for postal in ("12 Main St, Springfield, MA 01730", "Apt 4: 12 Elm St", {"line": ["12 Main St"]}):
        assert REDACTED == redact_phi(None, "info", {"event": "x", "address": postal,
                                                     "nested": {"address": postal}})["address"]


def test_alembic_setup_lines_do_not_reach_the_log() -> None:
    """Importing alembic's plugins logs 7 INFO "setup plugin" lines; at INFO none reaches careloom's stream."""
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    logging.getLogger("alembic.runtime.plugins").info("setup plugin %s", "alembic.autogenerate.schemas")
    logging.getLogger("alembic.runtime.migration").warning("a real problem")
    assert ["a real problem"] == [json.loads(line)["event"] for line in out.getvalue().splitlines()]
