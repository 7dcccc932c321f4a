"""Import FHIR R4: NDJSON in the Bulk Data layout (one file per resource type) and Bundles.

Bundles (``*.json``: transaction, batch, collection, searchset or document, as
Synthea and most EHR exports write them) are imported entry by entry:
``urn:uuid:`` references between entries become ``Type/id``, and an entry
without an id takes the uuid of its fullUrl, so importing the same Bundle
again changes nothing.

A malformed or invalid line or entry is reported with its file and line
number or entry index and skipped; everything valid is imported. Re-importing
the same data changes nothing (content hashes are compared).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ImportFailure
from store.fhir_validation import InvalidResource, validate_resource
from store.records import CareRecordStore

__all__ = ["BUNDLE_TYPES", "ImportReport", "LineProblem", "import_bundles", "import_ndjson", "import_path"]

_BATCH = 1000


@dataclass(frozen=True)
class LineProblem:
    """One skipped line."""

    file: str
    line: int
    message: str
    unit: str = "line"
    """``line`` (NDJSON: the line number), ``entry`` (a Bundle: the entry index, from 1) or ``file``."""

    def __str__(self) -> str:
        if self.unit == "entry":
            return f"{self.file}: entry {self.line}: {self.message}"
        if self.unit == "file":
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ImportReport:
    """Counts per resource type and outcome, and every skipped line."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    encounters: list[str] = field(default_factory=list)
    """Ids of the Encounters imported (new, changed or unchanged): what ``--start-outreach`` looks at."""

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


def import_ndjson(store: CareRecordStore, source: Path, *, files: list[Path] | None = None) -> ImportReport:
    """Import every ``*.ndjson`` under ``source`` (a folder or one file), or the ``files`` given."""
    if files is not None:
        pass
    elif source.is_file():
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
        if resource["resourceType"] == "Encounter":
            report.encounters.append(resource["id"])
    batch.clear()


BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset", "document"})
_UUID = re.compile(r"^urn:uuid:([0-9a-fA-F-]{36})$")


def _entry_id(entry: dict[str, Any], resource: dict[str, Any]) -> str | None:
    if isinstance(resource.get("id"), str) and resource["id"]:
        return resource["id"]
    full_url = entry.get("fullUrl") or ""
    if found := _UUID.match(full_url):
        return found.group(1).lower()
    tail = full_url.rstrip("/").rsplit("/", 2)
    return tail[-1] if len(tail) >= 2 and tail[-2] == resource.get("resourceType") else None


def _rewrite(value: Any, targets: dict[str, str]) -> Any:  # noqa: ANN401
    """``value`` with every ``reference`` that names another entry's fullUrl replaced by ``Type/id``."""
    if isinstance(value, dict):
        return {k: (targets.get(v, v) if k == "reference" and isinstance(v, str) else _rewrite(v, targets))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, targets) for v in value]
    return value


def _bundle_entries(path: Path, report: ImportReport) -> list[dict[str, Any]]:
    """The valid resources of one Bundle file; every problem reported."""
    try:
        bundle = json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as err:
        report.problems.append(LineProblem(str(path), err.lineno, f"not valid JSON ({err.msg} at line "
                                                                  f"{err.lineno}, column {err.colno})", "file"))
        return []
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        kind = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        report.problems.append(LineProblem(str(path), 0, f"holds a {kind}, not a FHIR Bundle; pass Bundles as "
                                                         ".json files or Bulk Data as <Type>.ndjson", "file"))
        return []
    if bundle.get("type") not in BUNDLE_TYPES:
        report.problems.append(LineProblem(str(path), 0, f"Bundle type {bundle.get('type')!r} is not imported; "
                                           f"use one of {', '.join(sorted(BUNDLE_TYPES))}", "file"))
        return []
    entries = bundle.get("entry") or []
    targets: dict[str, str] = {}
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and entry.get("fullUrl") and (rid := _entry_id(entry, resource)):
            targets[entry["fullUrl"]] = f"{resource.get('resourceType')}/{rid}"
    out = []
    for index, entry in enumerate(entries, start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            report.problems.append(LineProblem(str(path), index, "the entry has no resource", "entry"))
            continue
        rtype = resource.get("resourceType", "?")
        method = ((entry.get("request") or {}).get("method") or "").upper()
        if method == "DELETE":
            report.problems.append(LineProblem(str(path), index, f"({rtype}) DELETE entries are not applied; "
                                               "remove the resource in the source system instead", "entry"))
            continue
        rid = _entry_id(entry, resource)
        if rid is None:
            report.problems.append(LineProblem(str(path), index, f"({rtype}) has no id and no urn:uuid fullUrl "
                                               "to take one from", "entry"))
            continue
        try:
            out.append(validate_resource(_rewrite({**resource, "id": rid}, targets)))
        except InvalidResource as err:
            report.problems.append(LineProblem(str(path), index, f"({rtype}) {err}", "entry"))
    return out


def import_bundles(store: CareRecordStore, files: list[Path], report: ImportReport | None = None) -> ImportReport:
    """Import FHIR Bundle files; each Bundle's valid entries in one transaction."""
    report = report or ImportReport()
    for path in files:
        report.files.append(str(path))
        batch = _bundle_entries(path, report)
        _flush(store, batch, report)
    return report


def import_path(store: CareRecordStore, source: Path) -> ImportReport:
    """Import whatever ``source`` holds: Bulk Data ``*.ndjson`` and Bundle ``*.json`` files (a folder or a file)."""
    if source.is_file():
        ndjson, bundles = ([source], []) if source.suffix == ".ndjson" else ([], [source])
    elif source.is_dir():
        ndjson, bundles = sorted(source.rglob("*.ndjson")), sorted(source.rglob("*.json"))
    else:
        raise ImportFailure(f"{source} does not exist; pass a folder (or a file) of FHIR Bulk Data <Type>.ndjson "
                            "files or FHIR Bundle .json files")
    if not ndjson and not bundles:
        raise ImportFailure(f"{source} holds no *.ndjson or *.json files; expected FHIR Bulk Data "
                            "(<Type>.ndjson) or FHIR Bundles (.json, e.g. a Synthea export)")
    report = import_ndjson(store, source, files=ndjson) if ndjson else ImportReport()
    return import_bundles(store, bundles, report)
