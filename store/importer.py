"""Import FHIR R4 NDJSON in the Bulk Data layout (one file per resource type).

A malformed or invalid line is reported with its file and line number and
skipped; everything valid is imported. Re-importing the same data changes
nothing (content hashes are compared).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ImportFailure
from store.fhir_validation import InvalidResource, validate_resource
from store.records import CareRecordStore

__all__ = ["ImportReport", "LineProblem", "import_ndjson"]

_BATCH = 1000


@dataclass(frozen=True)
class LineProblem:
    """One skipped line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ImportReport:
    """Counts per resource type and outcome, and every skipped line."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.problems)

    def total(self, outcome: str) -> int:
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    def as_dict(self) -> dict[str, Any]:
        by_type: dict[str, dict[str, int]] = {}
        for (rtype, outcome), n in sorted(self.counts.items()):
            by_type.setdefault(rtype, {})[outcome] = n
        return {
            "files": self.files,
            "by_type": by_type,
            "inserted": self.total("inserted"),
            "updated": self.total("updated"),
            "unchanged": self.total("unchanged"),
            "skipped": self.skipped,
            "problems": [str(p) for p in self.problems],
        }


def _expected_type(path: Path) -> str:
    # Bulk Data allows Patient.ndjson and split files such as Patient.001.ndjson.
    return path.name.split(".", 1)[0]


def _parse_line(raw: str, expected: str) -> dict[str, Any]:
    try:
        resource = json.loads(raw.strip())
    except json.JSONDecodeError as err:
        raise InvalidResource(f"not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(resource, dict):
        raise InvalidResource("a line must hold one JSON object")
    if resource.get("resourceType") != expected:
        raise InvalidResource(
            f"resourceType {resource.get('resourceType')!r} does not match the file ({expected}.ndjson)"
        )
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        raise InvalidResource("the resource has no id; bulk data resources must carry one")
    return validate_resource(resource)


def import_ndjson(store: CareRecordStore, source: Path) -> ImportReport:
    """Import every ``*.ndjson`` under ``source`` (a folder or one file)."""
    if source.is_file():
        files = [source]
    elif source.is_dir():
        files = sorted(source.rglob("*.ndjson"))
    else:
        raise ImportFailure(f"{source} does not exist; pass a folder of <Type>.ndjson files or one file")
    if not files:
        raise ImportFailure(f"{source} holds no *.ndjson files; expected the FHIR Bulk Data layout")
    report = ImportReport()
    for path in files:
        report.files.append(str(path))
        expected = _expected_type(path)
        batch: list[dict[str, Any]] = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    batch.append(_parse_line(raw, expected))
                except InvalidResource as err:
                    report.problems.append(LineProblem(str(path), number, str(err)))
                    continue
                if len(batch) >= _BATCH:
                    _flush(store, batch, report)
        _flush(store, batch, report)
    return report


def _flush(store: CareRecordStore, batch: list[dict[str, Any]], report: ImportReport) -> None:
    if not batch:
        return
    for resource, outcome in zip(batch, store.put_many(batch), strict=True):
        report.counts[(resource["resourceType"], outcome)] += 1
    batch.clear()
