"""structlog configuration, done once at process start.

JSON lines in production or when stdout is not a terminal, a readable console
format on a terminal. Log events carry identifiers only: never names, dates of
birth, addresses or clinical text.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

import structlog

from runtime.phi import DIRECT_KEYS, PATTERNS, normalize_key

__all__ = ["REDACTED", "configure_logging", "redact_phi"]

REDACTED = "[REDACTED]"
# Direct identifiers, plus the fields that carry free text or whole contact points (compared normalized).
_PHI_KEYS = frozenset(DIRECT_KEYS) | {
    "mrn", "fullname", "membername", "contact", "message", "content", "payload", "contentstring", "note", "text",
}


# A network endpoint (host:port, an IP, a URL) is infrastructure, not a member's address: logged as it is. The
# "address" key is a direct identifier when it holds a postal address; an endpoint never looks like one.
_ENDPOINT = re.compile(r"^(?:[a-z][a-z0-9+.-]*://\S+|\[?[A-Za-z0-9.:-]+\]?:\d{1,5}|\d{1,3}(?:\.\d{1,3}){3})$")
_ENDPOINT_KEYS = frozenset({"address"})
# Libraries that log their own setup at INFO (alembic lists 7 "setup plugin" lines on every import of its
# autogenerate package): careloom reports what matters itself.
_QUIET = ("alembic",)


def _redacted(key: object, value: object) -> bool:
    normalized = normalize_key(key)
    if normalized not in _PHI_KEYS:
        return False
    return not (normalized in _ENDPOINT_KEYS and isinstance(value, str) and _ENDPOINT.match(value) is not None)


def _scrub(value: object) -> object:
    if isinstance(value, str):
        for _, pattern in PATTERNS:
            value = pattern.sub(REDACTED, value)
        return value
    if isinstance(value, dict):
        return {k: REDACTED if _redacted(k, v) else _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def redact_phi(_logger: object, _method: str, event_dict: dict) -> dict:
    """structlog processor: drop PHI fields and mask phone, email, SSN and MRN patterns in every value."""
    return {k: REDACTED if _redacted(k, v) and k != "event" else _scrub(v) for k, v in event_dict.items()}


def configure_logging(level: str = "INFO", fmt: str = "auto", *, stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging (Temporal's included) through one renderer.

    ``stream`` defaults to stderr; the demo passes a log file so the console shows only its summary.
    """
    out = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if out.isatty() else "json"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=out.isatty()) if fmt == "console" else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Redaction runs last before rendering, on structlog and stdlib (Temporal's) records alike.
    foreign = [*shared, structlog.stdlib.ExtraAdder(), redact_phi]
    structlog.configure(
        processors=[*shared, redact_phi, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=foreign,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # HTTP clients log whole requests at DEBUG (the model request's messages among them): never below WARNING.
    for name in ("openai", "httpx", "httpcore", *_QUIET):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
