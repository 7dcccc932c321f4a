"""Import FHIR R4 into the care records store: Bulk Data NDJSON or FHIR Bundles.

:func:`import_path` picks the format: a ``.json`` file is a Bundle, any other
file is NDJSON; a folder with ``*.ndjson`` files is a Bulk Data export (its
``*.json`` files, e.g. an export manifest, are listed as ignored), a folder
without them is a folder of Bundles (``*.json``, one per patient as Synthea
writes them).

NDJSON (:func:`import_ndjson`): one file per resource type; a malformed or
invalid line is reported with its file and line number and skipped.

Bundles (:func:`import_bundles`): ``transaction``, ``batch``, ``collection``,
``searchset`` and ``document`` Bundles are imported entry by entry. References to an
entry's ``fullUrl`` (``urn:uuid:...`` or absolute) are rewritten to
``Type/id``; an entry's resource without an id takes the id its fullUrl
names (the uuid of ``urn:uuid:<uuid>``), so importing the same Bundle again
changes nothing. An invalid entry is reported with its file and entry number
(1-based) and skipped, and so is an entry that references a ``urn:uuid:``
no entry of its Bundle has; a file that is not JSON, not a Bundle, or a
``message``/``history``/response Bundle is reported and skipped whole.

Everything valid is imported, and re-importing the same data changes nothing
(content hashes are compared).

**One id, one resource per import.** Two places in one import that give the
same ``Type/id`` different content (two Synthea folders generated with the same
seed reuse their Patient ids for different people) would silently overwrite
each other: the second person's encounters would hang off the first. The
rule: the first occurrence in import order (files sorted by path, lines and
entries in order) is kept; a later NDJSON line that conflicts with it is
skipped, and a later Bundle with any conflicting entry is skipped whole (its
entries reference each other, so importing the rest would attach them to the
other resource). Each refusal is a problem naming both locations
(``file:line`` or ``file entry N``). The same content under the same id
(e.g. a shared Organization) is no conflict.

**A refused NDJSON Patient takes its records with it.** Skipping the line
alone is not enough: the second export's Encounters, Conditions... keep
their own ids (no conflict) and say ``subject: Patient/<reused id>``, so they
would hang off the kept person and ``import --start-outreach`` would contact
them about someone else's stay. So a first pass reads the Patient files (in
Bulk Data folders ``Encounter.ndjson`` sorts before ``Patient.ndjson``) and
finds the refused Patient lines; every resource of the refused line's folder
(one Bulk Data export) that references that Patient, or references a resource
held so, is held: not imported, one problem each naming the refused line.
When both versions of the Patient come from one folder, whose record is whose
cannot be told: every record of that folder referencing the id is held.

**A Patient that changes identity between imports is a warning.** A later
import that gives a stored Patient another ``name`` or ``birthDate`` is
imported (a correction is legitimate) and reported in ``warnings``
(``Patient/x changed identity fields (birthDate)``): it may be another
person under a reused id.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ImportFailure
from store.fhir_validation import InvalidResource, validate_resource
from store.records import RISK_MODEL_SYSTEM, CareRecordStore, member_of

__all__ = ["IMPORTED_BUNDLE_TYPES", "MEASURE_DATA_TYPES", "ImportReport", "LineProblem", "import_bundles", "import_ndjson",
           "import_path"]

_BATCH = 1000
_IDENTITY_FIELDS = ("name", "birthDate")
MEASURE_DATA_TYPES = frozenset({"Condition", "Encounter", "Observation", "Procedure"})
"""The types the quality measures read (= tools.measure_data.MEASURE_TYPES; the store cannot import tools)."""

IMPORTED_BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset", "document"})
"""Bundle types whose entries are records to load; the others are refused (see :func:`import_bundles`)."""


@dataclass(frozen=True)
class LineProblem:
    """One skipped line (NDJSON), Bundle entry, or whole file.

    ``line`` is the NDJSON line (or the line of a JSON syntax error); ``entry``
    the 1-based Bundle entry number and ``resource_type`` its resource's type.
    """

    file: str
    line: int | None
    message: str
    entry: int | None = None
    resource_type: str | None = None

    def __str__(self) -> str:
        if self.entry is not None:
            kind = f" ({self.resource_type})" if self.resource_type else ""
            return f"{self.file}: entry {self.entry}{kind}: {self.message}"
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ImportReport:
    """Counts per resource type and outcome, every skipped line or entry, and the Encounters imported."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    """Files of a Bulk Data folder that are not NDJSON (``*.json``): not imported."""
    encounters: list[str] = field(default_factory=list)
    """Ids of the Encounters imported (inserted, updated or unchanged), in import order, each once."""
    members_with_measure_data: list[str] = field(default_factory=list)
    """Members (Patient ids) with Condition, Encounter, Observation or Procedure records in this import (inserted,
    updated or unchanged: a rerun after Temporal was unreachable still reaches them), each once: whose
    quality-measure results may have changed (``--recheck-gaps``)."""
    members_seen: set[str] = field(default_factory=set, repr=False)
    conflicts: int = 0
    """Lines and Bundles refused because an earlier place in this import gave one of their ids other content."""
    held: int = 0
    """NDJSON lines not imported because they reference a refused Patient of their own export (a problem each)."""
    warnings: list[str] = field(default_factory=list)
    """Imported, but worth a look: a stored Patient whose name or birth date this import changed."""

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
            "ignored": self.ignored,
            "by_type": by_type,
            "inserted": self.total("inserted"),
            "updated": self.total("updated"),
            "unchanged": self.total("unchanged"),
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "held": self.held,
            "problems": [str(p) for p in self.problems],
            "warnings": self.warnings,
        }


def import_path(store: CareRecordStore, source: Path) -> ImportReport:
    """Import ``source``: NDJSON or Bundles, chosen by extension (see the module docstring)."""
    if source.is_file():
        if source.suffix.lower() == ".json":
            return import_bundles(store, source)
        return import_ndjson(store, source)
    if not source.is_dir():
        raise ImportFailure(f"{source} does not exist; pass a folder of <Type>.ndjson files (FHIR Bulk Data), "
                            "a folder of FHIR Bundle .json files, or one such file")
    if next(source.rglob("*.ndjson"), None) is not None:
        report = import_ndjson(store, source)
        report.ignored = [str(p) for p in sorted(source.rglob("*.json"))]
        return report
    if next(source.rglob("*.json"), None) is not None:
        return import_bundles(store, source)
    raise ImportFailure(f"{source} holds no *.ndjson or *.json files; expected FHIR Bulk Data NDJSON "
                        "(<Type>.ndjson, one file per resource type) or FHIR Bundles (*.json, e.g. one "
                        "transaction Bundle per patient as Synthea writes them)")


# --- NDJSON ------------------------------------------------------------------

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
    return _importable(resource)


def _importable(resource: dict[str, Any]) -> dict[str, Any]:
    """A valid resource an import may bring: careloom's own model scores are refused (its risk activity writes
    them; an imported one could skew `careloom model compare` and drift monitoring)."""
    validate_resource(resource)
    if resource.get("resourceType") == "RiskAssessment" and any(
            coding.get("system") == RISK_MODEL_SYSTEM
            for coding in ((resource.get("method") or {}).get("coding") or [])):
        raise InvalidResource(f"RiskAssessment with method {RISK_MODEL_SYSTEM} is careloom's own learned score, "
                              "written by its risk activity only; remove it from the export")
    return resource


def _files(source: Path, pattern: str, *, folder_of: str, expected: str) -> list[Path]:
    """``source`` itself, or the files matching ``pattern`` under it; ImportFailure naming what was expected."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ImportFailure(f"{source} does not exist; pass a folder of {folder_of} or one file")
    files = sorted(source.rglob(pattern))
    if not files:
        raise ImportFailure(f"{source} holds no {pattern} files; expected {expected}")
    return files


def import_ndjson(store: CareRecordStore, source: Path) -> ImportReport:
    """Import every ``*.ndjson`` under ``source`` (a folder or one file)."""
    files = _files(source, "*.ndjson", folder_of="<Type>.ndjson files", expected="the FHIR Bulk Data layout")
    report = ImportReport()
    seen: set[str] = set()
    first = _FirstSeen()
    refused = _refused_patients(files, first)  # claims every Patient line: the second pass does not again
    held = _held_records(files, refused)
    for path in files:
        name = str(path)
        report.files.append(name)
        expected = _expected_type(path)
        batch: list[dict[str, Any]] = []
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    resource = _parse_line(raw, expected)
                except InvalidResource as err:
                    report.problems.append(LineProblem(str(path), number, str(err)))
                    continue
                key = _key(resource)
                if expected == "Patient":
                    conflict = refused.lines.get((name, number))
                    conflict = None if conflict is None else (0, conflict)
                elif (why := held.get((path.parent, key))) is not None:
                    report.held += 1
                    report.problems.append(LineProblem(name, number, (
                        f"{key} held, not imported: it {why}, so it would attach to another person's record. "
                        "Give the resources of one export other ids, or import only one of the two exports")))
                    continue
                else:
                    conflict = first.claim(name, [(number, resource)], entries=False)
                if conflict is not None:
                    report.conflicts += 1
                    report.problems.append(LineProblem(name, number, (
                        f"{key} conflicts with {conflict[1]}: the same id with different content in "
                        "one import; the first was kept and this line skipped. Give one of them another id, "
                        "or import only one of the two exports")))
                    continue
                batch.append(resource)
                if len(batch) >= _BATCH:
                    _flush(store, batch, report, seen)
        _flush(store, batch, report, seen)
    return report


@dataclass
class _Refused:
    """The Patient lines of this import refused as conflicts, and which Patient each export folder lost."""

    lines: dict[tuple[str, int], str] = field(default_factory=dict)
    """(file, line) of each refused Patient line → where its other version is (``file:line``)."""
    by_folder: dict[Path, dict[str, str]] = field(default_factory=dict)
    """Export folder → refused Patient id → why its records are held (names both lines)."""


def _refused_patients(files: list[Path], first: _FirstSeen) -> _Refused:
    """First pass: claim every valid Patient line in import order; the conflicting ones are refused."""
    refused = _Refused()
    kept_in: dict[str, Path] = {}  # Patient id → folder of the version kept
    for path in files:
        if _expected_type(path) != "Patient":
            continue
        name = str(path)
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    resource = _parse_line(raw, "Patient")
                except InvalidResource:
                    continue  # reported by the second pass
                conflict = first.claim(name, [(number, resource)], entries=False)
                if conflict is None:
                    kept_in.setdefault(resource["id"], path.parent)
                    continue
                refused.lines[(name, number)] = conflict[1]
                why = f"references Patient/{resource['id']}, whose line {name}:{number} was refused (it " \
                      f"conflicts with {conflict[1]})"
                if kept_in.get(resource["id"]) == path.parent:
                    why += "; both versions come from this folder, so whose record this is cannot be told"
                refused.by_folder.setdefault(path.parent, {}).setdefault(resource["id"], why)
    return refused


def _held_records(files: list[Path], refused: _Refused) -> dict[tuple[Path, str], str]:
    """(folder, Type/id) → why, for every resource of an export folder that lost a Patient and references it,
    directly or through another held resource of that folder (e.g. an Observation of a held Encounter)."""
    held: dict[tuple[Path, str], str] = {}
    for folder, patients in refused.by_folder.items():
        links: dict[str, set[str]] = {}
        for path in files:
            if path.parent != folder or _expected_type(path) == "Patient":
                continue
            with path.open(encoding="utf-8", errors="replace") as handle:
                for raw in handle:
                    try:
                        resource = json.loads(raw)
                    except json.JSONDecodeError:
                        continue  # reported by the second pass
                    if isinstance(resource, dict) and isinstance(resource.get("id"), str):
                        key = f"{resource.get('resourceType')}/{resource['id']}"
                        links.setdefault(key, set()).update(_references(resource))
        why = {f"Patient/{pid}": reason for pid, reason in patients.items()}
        grew = True
        while grew:  # until no record references a held one: chains are short (Observation → Encounter)
            grew = False
            for key, targets in links.items():
                if key in why:
                    continue
                if (via := next((t for t in sorted(targets) if t in why), None)) is not None:
                    why[key] = why[via] if via.startswith("Patient/") else f"references held {via}, which {why[via]}"
                    grew = True
        held.update({(folder, key): reason for key, reason in why.items() if not key.startswith("Patient/")})
    return held


def _references(value: Any) -> set[str]:
    """Every ``Type/id`` that ``value`` references (relative, absolute or versioned references alike)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, inner in item.items():
                if key == "reference" and isinstance(inner, str):
                    parts = inner.split("/_history/")[0].rstrip("/").split("/")
                    if len(parts) >= 2:
                        found.add(f"{parts[-2]}/{parts[-1]}")
                else:
                    stack.append(inner)
    return found


def _flush(store: CareRecordStore, batch: list[dict[str, Any]], report: ImportReport, seen: set[str]) -> None:
    if not batch:
        return
    # Read before the write: a stored Patient's identity this import changes is worth a warning (one read per
    # Patient; the other resources are not read).
    stored = {r["id"]: store.get("Patient", r["id"]) for r in batch if r["resourceType"] == "Patient"}
    for resource, outcome in zip(batch, store.put_many(batch), strict=True):
        report.counts[(resource["resourceType"], outcome)] += 1
        if outcome == "updated" and (earlier := stored.get(resource["id"])) is not None \
                and resource["resourceType"] == "Patient":
            changed = [f for f in _IDENTITY_FIELDS if earlier.get(f) != resource.get(f)]
            if changed:
                report.warnings.append(
                    f"Patient/{resource['id']} changed identity fields ({', '.join(changed)}) since it was last "
                    "imported: if this is another person under a reused id, their records now hang off the "
                    "earlier one's; give one export other ids")
        if resource["resourceType"] in MEASURE_DATA_TYPES and (member := member_of(resource)) is not None \
                and member not in report.members_seen:
            report.members_seen.add(member)
            report.members_with_measure_data.append(member)
        if resource["resourceType"] == "Encounter" and resource["id"] not in seen:
            seen.add(resource["id"])
            report.encounters.append(resource["id"])
    batch.clear()


# --- one id, one resource per import ---------------------------------------------------------

def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


class _FirstSeen:
    """Where each ``Type/id`` of this import was first seen, and a digest of its content.

    Per resource a 12-byte digest, the line or entry number and a reference to its file's name (shared by
    the file's resources): about 200 bytes with the key, so a million-resource export holds about 200 MB.
    """

    def __init__(self) -> None:
        self._first: dict[str, tuple[bytes, str, int, bool]] = {}

    def claim(self, file: str, numbered: list[tuple[int, dict[str, Any]]], *, entries: bool
              ) -> tuple[int, str] | None:
        """Record these (line or entry number, resource) pairs of ``file`` as seen, all or none: None, or the
        index of the first that conflicts and where its earlier, different version is (nothing recorded)."""
        fresh: dict[str, tuple[bytes, str, int, bool]] = {}
        for index, (number, resource) in enumerate(numbered):
            key = _key(resource)
            canonical = json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()
            digest = hashlib.blake2b(canonical, digest_size=12).digest()
            prior = self._first.get(key) or fresh.get(key)
            if prior is None:
                fresh[key] = (digest, file, number, entries)
            elif prior[0] != digest:
                _, where, at, entry = prior
                return index, f"{where} entry {at}" if entry else f"{where}:{at}"
        self._first.update(fresh)
        return None


# --- Bundles -----------------------------------------------------------------

_LOCAL_PREFIXES = ("urn:uuid:", "urn:oid:")


def import_bundles(store: CareRecordStore, source: Path) -> ImportReport:
    """Import every ``*.json`` FHIR Bundle under ``source`` (a folder or one file), entry by entry."""
    files = _files(source, "*.json", folder_of="FHIR Bundle .json files",
                   expected="FHIR Bundles (transaction, batch, collection or searchset), one per file")
    report = ImportReport()
    seen: set[str] = set()
    first = _FirstSeen()
    for path in files:
        report.files.append(str(path))
        entries = _bundle_resources(path, report)
        if (conflict := first.claim(str(path), entries, entries=True)) is not None:
            index, prior = conflict
            number, resource = entries[index]
            report.conflicts += 1
            report.problems.append(LineProblem(str(path), None, (
                f"{_key(resource)} conflicts with {prior}: the same id with different content in one import. "
                f"This Bundle was not imported (its {len(entries)} entries reference each other, so the rest "
                "would attach to the other resource). Give the resources of one export other ids (e.g. "
                "generate it with another seed), or import only one of the two"),
                entry=number, resource_type=resource["resourceType"]))
            continue
        batch = [r for _, r in entries]
        for start in range(0, len(batch), _BATCH):
            _flush(store, batch[start:start + _BATCH], report, seen)
    return report


def _load_bundle(path: Path, report: ImportReport) -> dict[str, Any] | None:
    """The Bundle in ``path``, or None with a file-level problem recorded."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        report.problems.append(LineProblem(name, None, "not UTF-8 text; a FHIR Bundle file is UTF-8 JSON"))
        return None
    except OSError as err:
        report.problems.append(LineProblem(name, None, f"cannot be read ({err.strerror})"))
        return None
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as err:
        report.problems.append(LineProblem(name, err.lineno, f"not valid JSON ({err.msg} at column {err.colno}); "
                                                             "a .json file must hold one FHIR Bundle"))
        return None
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        found = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        report.problems.append(LineProblem(
            name, None, f"holds a {found}, not a FHIR Bundle; pass Bundles as .json files (one Bundle each) "
                        "or single resources as Bulk Data <Type>.ndjson"))
        return None
    kind = bundle.get("type")
    if kind not in IMPORTED_BUNDLE_TYPES:
        report.problems.append(LineProblem(
            name, None, f"Bundle type {kind!r} is not imported; only "
                        f"{', '.join(sorted(IMPORTED_BUNDLE_TYPES))} Bundles hold records to load (a message "
                        "or history Bundle is an event log: send its resources as a collection Bundle)"))
        return None
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        report.problems.append(LineProblem(name, None, "Bundle.entry is not a list"))
        return None
    return bundle


def _entry_target(entry: Any) -> tuple[str, str] | str:
    """(type, id) an entry's resource is stored as, or why it has none."""
    resource = entry["resource"]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return "the resource has no resourceType"
    put_id = None
    request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
    url = request.get("url")
    if request.get("method") == "PUT" and isinstance(url, str) and "?" not in url and url.count("/") == 1:
        url_type, put_id = url.split("/")
        if url_type != rtype:
            return f"request.url {url!r} names a {url_type}, the resource is a {rtype}; make them agree"
    rid = resource.get("id")
    if rid is not None:
        if not isinstance(rid, str) or not rid:
            return f"id {rid!r} is not a FHIR id; give the resource a string id or remove it"
        if put_id is not None and put_id != rid:
            return f"request.url {url!r} names id {put_id!r} but the resource's id is {rid!r}; make them agree"
        return rtype, rid
    if put_id:
        return rtype, put_id
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str):
        for prefix in _LOCAL_PREFIXES:
            if full_url.startswith(prefix) and full_url.removeprefix(prefix):
                return rtype, full_url.removeprefix(prefix)
        parts = full_url.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == rtype and parts[-1]:
            return rtype, parts[-1]
    return ("the resource has no id and the entry no urn:uuid fullUrl to take one from; "
            "give the resource an id or the entry a fullUrl such as urn:uuid:<uuid>")


def _rewrite(value: Any, targets: dict[str, str], dangling: list[str]) -> Any:
    """``value`` with every ``reference`` to a Bundle fullUrl replaced by ``Type/id``."""
    if isinstance(value, list):
        return [_rewrite(v, targets, dangling) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key == "reference" and isinstance(item, str):
            if item in targets:
                item = targets[item]
            elif item.startswith(_LOCAL_PREFIXES):
                dangling.append(item)
            out[key] = item
        else:
            out[key] = _rewrite(item, targets, dangling)
    return out


def _bundle_resources(path: Path, report: ImportReport) -> list[tuple[int, dict[str, Any]]]:
    """(entry number, resource) of each valid entry of one Bundle file, references resolved; problems recorded
    in ``report``."""
    bundle = _load_bundle(path, report)
    if bundle is None:
        return []
    name = str(path)
    pending: list[tuple[int, str, dict[str, Any]]] = []
    targets: dict[str, str] = {}
    for number, entry in enumerate(bundle.get("entry", []), start=1):
        if not isinstance(entry, dict):
            report.problems.append(LineProblem(name, None, "an entry must be a JSON object", entry=number))
            continue
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = request.get("method")
        resource = entry.get("resource")
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if method not in (None, "POST", "PUT"):
            report.problems.append(LineProblem(
                name, None, f"request.method {method} is not imported; only POST and PUT entries (or entries "
                            "without a request) are loaded", entry=number, resource_type=rtype))
            continue
        if (entry.get("search") or {}).get("mode") == "outcome":
            continue  # a searchset's OperationOutcome about the search, not a record
        if not isinstance(resource, dict):
            report.problems.append(LineProblem(name, None, "the entry has no resource (a JSON object)",
                                               entry=number))
            continue
        target = _entry_target(entry)
        if isinstance(target, str):
            report.problems.append(LineProblem(name, None, target, entry=number, resource_type=rtype))
            continue
        local = f"{target[0]}/{target[1]}"
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            targets[full_url] = local
        pending.append((number, local, resource))

    resources: list[tuple[int, dict[str, Any]]] = []
    for number, local, original in pending:
        rtype, rid = local.split("/", 1)
        dangling: list[str] = []
        resource = _rewrite(copy.deepcopy(original), targets, dangling)
        resource["id"] = rid
        if dangling:
            report.problems.append(LineProblem(
                name, None, f"references {dangling[0]}, which no entry of this Bundle has as its fullUrl; "
                            "add the referenced resource to the Bundle or reference it as Type/id",
                entry=number, resource_type=rtype))
            continue
        try:
            resources.append((number, _importable(resource)))
        except InvalidResource as err:
            report.problems.append(LineProblem(name, None, str(err), entry=number, resource_type=rtype))
    return resources
