"""Synthetic data moved in time: every date in a folder of FHIR files shifted by a number of days.

The shipped sample data is a snapshot taken on 2024-12-31 (sample_data/README.md). Outreach checks coverage on
the discharge date *and today*, and only contacts discharges it can still help, so a 2024 snapshot read in 2026
would be all "ineligible". The demo therefore reads a copy whose dates are moved forward so that the snapshot
date is today, the way a payer's feed would look; the files on disk are never changed. Dates inside other
strings (identifiers such as ``fy2024``) are left alone: only values that are a whole ISO date or date-time move.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["shift_date", "shift_folder", "shift_value"]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")


def shift_date(text: str, days: int) -> str:
    """``YYYY-MM-DD`` moved by ``days``."""
    return (date.fromisoformat(text) + timedelta(days=days)).isoformat()


def _shift_text(text: str, days: int) -> str:
    if _DATE.fullmatch(text):
        return shift_date(text, days)
    if _DATE_TIME.fullmatch(text):
        return shift_date(text[:10], days) + text[10:]  # the calendar day moves; time and offset stay as written
    return text


def shift_value(value: Any, days: int) -> Any:  # noqa: ANN401 - any parsed JSON
    """Every whole ISO date or date-time string in ``value`` moved by ``days``."""
    if isinstance(value, str):
        return _shift_text(value, days)
    if isinstance(value, list):
        return [shift_value(v, days) for v in value]
    if isinstance(value, dict):
        return {k: shift_value(v, days) for k, v in value.items()}
    return value


def shift_folder(source: Path, target: Path, days: int) -> Path:
    """A copy of ``source`` (``*.ndjson`` and ``*.json``, sub-folders included) with every date moved; ``target``."""
    for path in sorted(source.rglob("*")):
        if path.is_dir() or path.suffix not in (".ndjson", ".json"):
            continue
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ndjson":
            lines = [json.dumps(shift_value(json.loads(line), days)) for line in text.splitlines() if line.strip()]
            out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            out.write_text(json.dumps(shift_value(json.loads(text), days), indent=1), encoding="utf-8")
    return target
