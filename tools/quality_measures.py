"""Quality measures as data, evaluated by the maintained CQL engine ``ms-cql-sdk`` (import name ``cql_sdk``).

What: each measure is a folder under ``tools/measures/`` holding a CQL library, the FHIR ValueSets it names
(expanded, one JSON file each, under ``valuesets/``) and a ``measure.json`` saying which CQL definitions are
the Initial Population, Denominator, Denominator Exclusion and Numerator, and whether being in the Numerator
means the member's care gap is closed (most measures) or open (inverse measures such as CMS122 HbA1c poor
control). :func:`load_measures` compiles every library with the engine's CQL→ELM translator;
:func:`evaluate_member` runs one member's FHIR R4 resources through the engine's in-memory ELM runtime, and
:func:`evaluate_population_postgres` runs the same definitions as SQL over FHIR JSONB on PostgreSQL.

Why: care-gap rules are written by quality teams in CQL, the HL7 standard, not in Python. This module only
loads, validates and calls the engine; it interprets no CQL itself.

Engine limits handled here (see docs/quality-measures.md): the in-memory runtime cannot compare a FHIR
``date`` with a ``dateTime`` and drops time-zone offsets without converting, so :func:`engine_resources`
rewrites every date or dateTime in a member's resources (birthDate excepted) to a UTC dateTime before either
engine path sees them; the PostgreSQL session runs in UTC so both paths agree.

Pure: no Temporal, no records-store writes.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

from cql_sdk.api import load_library_from_text
from cql_sdk.compiler.cql_to_elm import CqlError, translate
from cql_sdk.elm.models.library import Library
from cql_sdk.fhir.retrieve import BundleDataSource
from cql_sdk.fhir.terminology import StaticTerminologyProvider
from cql_sdk.invocation.toolkit import InvocationToolkit
from cql_sdk.postgres import PostgresExecutor, PostgresFHIRStore
from cql_sdk.postgres.driver import connect
from cql_sdk.runtime.context import RuntimeContext
from cql_sdk.runtime.intervals import Interval
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

__all__ = ["MEASURES_FOLDER", "MeasureDefinition", "MeasureError", "MeasurementPeriod", "MemberResult",
           "PopulationDefinitions", "drop_postgres_schema", "engine_resources", "evaluate_member",
           "evaluate_population_postgres", "load_measure", "load_measures", "shipped_measures", "load_members_postgres",
           "measurement_period"]

MEASURES_FOLDER = Path(__file__).with_name("measures")
"""The shipped measure definitions: one sub-folder per measure."""

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")
_KEEP_AS_DATE = frozenset({"birthDate"})


class MeasureError(ValueError):
    """A measure definition, its CQL, its value sets or a measurement period is unusable."""


class PopulationDefinitions(BaseModel):
    """The CQL definition (``define "..."``) that decides each population."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_population: str
    denominator: str
    denominator_exclusion: str | None = None
    numerator: str


class MeasureDefinition(BaseModel):
    """One measure from its ``measure.json``, with its compiled CQL library and its value sets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str
    steward_reference: str = Field(description='The measure it follows, e.g. "CMS122v11-like".')
    version: str
    library: str = Field(description="The CQL library file, relative to the measure folder.")
    populations: PopulationDefinitions
    numerator_means: Literal["gap_closed", "gap_open"] = Field(
        description="gap_open for inverse measures (being in the Numerator is the gap).")
    evidence: list[str] = Field(default_factory=list,
                                description="CQL definitions whose resources are returned as evidence.")
    folder: Path = Field(default=Path("."), description="Where the measure was loaded from.")
    value_set_urls: list[str] = Field(default_factory=list, description="Every value set the library names.")

    _library: Library | None = PrivateAttr(default=None)
    _terminology: StaticTerminologyProvider | None = PrivateAttr(default=None)
    _value_sets: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def engine_library(self) -> Library:
        if self._library is None:
            raise MeasureError(f"measure {self.id} was not loaded with load_measure(s): its CQL is not compiled")
        return self._library

    @property
    def value_sets(self) -> list[dict[str, Any]]:
        """The expanded FHIR ValueSet resources the measure ships."""
        return list(self._value_sets)


class MeasurementPeriod(BaseModel):
    """A closed measurement period, UTC: [start, end] with end at the last millisecond of its last day."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    def interval(self) -> Interval:
        return Interval(low=self.start, high=self.end, low_closed=True, high_closed=True)


class MemberResult(BaseModel):
    """One member's populations for one measure. Populations nest (proportion scoring): a member counts in
    the Denominator only inside the Initial Population, and in the Numerator only in the Denominator and not
    excluded. ``gap_open`` is what outreach acts on."""

    model_config = ConfigDict(frozen=True)

    measure_id: str
    member_id: str
    period_start: datetime
    period_end: datetime
    initial_population: bool
    denominator: bool
    denominator_exclusion: bool
    numerator: bool
    gap_open: bool
    evidence: list[str] = Field(default_factory=list, description='Resource references, e.g. "Observation/o1".')
    engine: Literal["memory", "postgres"]


# --- loading ------------------------------------------------------------------------------------------------


def load_measures(folder: Path | str | None = None) -> list[MeasureDefinition]:
    """Every measure under ``folder`` (default: the shipped ``tools/measures``), sorted by id."""
    root = Path(folder) if folder is not None else MEASURES_FOLDER
    if not root.is_dir():
        raise MeasureError(f"measures folder {root} does not exist: pass a folder with one sub-folder per measure")
    measures = [load_measure(sub) for sub in sorted(root.iterdir()) if (sub / "measure.json").is_file()]
    if not measures:
        raise MeasureError(f"no measure.json under {root}: each measure needs its own folder with a measure.json")
    ids = [m.id for m in measures]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise MeasureError(f"measure ids {duplicates} are declared by more than one folder under {root}")
    return sorted(measures, key=lambda m: m.id)


@lru_cache(maxsize=1)
def shipped_measures() -> tuple[MeasureDefinition, ...]:
    """The measures under :data:`MEASURES_FOLDER`, compiled once per process (the worker, the API and the CLI share
    them; compiling the CQL is the slow part)."""
    return tuple(load_measures())


def load_measure(folder: Path | str) -> MeasureDefinition:
    """One measure folder: read ``measure.json``, compile its CQL, check its definitions and value sets."""
    root = Path(folder)
    spec_file = root / "measure.json"
    try:
        raw = json.loads(spec_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise MeasureError(f"{spec_file}: cannot read the measure definition ({exc})") from exc
    try:
        measure = MeasureDefinition.model_validate({**raw, "folder": root})
    except ValidationError as exc:
        raise MeasureError(f"{spec_file}: not a valid measure definition: {exc}") from exc
    library = _compile_library(root / measure.library)
    _check_definitions(measure, library, spec_file)
    value_sets = _read_value_sets(root / "valuesets")
    declared = {str(v.get("id") or ""): name for name, v in library.value_sets.items()}
    shipped = {str(vs.get("url")) for vs in value_sets}
    missing = sorted((url, name) for url, name in declared.items() if url not in shipped)
    if missing:
        named = ", ".join(f'"{name}" ({url})' for url, name in missing)
        raise MeasureError(f"{root / measure.library}: value set {named} is not shipped in {root / 'valuesets'}: "
                           "add its expanded FHIR ValueSet (url matching the CQL declaration) there")
    terminology = StaticTerminologyProvider()
    for vs in value_sets:
        terminology.ingest(vs)
    measure = measure.model_copy(update={"value_set_urls": sorted(declared)})
    measure._library = library
    measure._terminology = terminology
    measure._value_sets = value_sets
    return measure


def _compile_library(path: Path) -> Library:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MeasureError(f"CQL library {path} cannot be read ({exc}): measure.json 'library' must name a file "
                           "in the measure folder") from exc
    try:
        elm = translate(text)
    except CqlError as exc:
        where = f"line {exc.line}" + (f", column {exc.column}" if exc.column is not None else "") \
            if exc.line is not None else "unknown line"
        raise MeasureError(f"{path}:{exc.line or '?'}: CQL does not compile ({where}): {exc.message}") from exc
    return load_library_from_text(json.dumps(elm))


def _check_definitions(measure: MeasureDefinition, library: Library, spec_file: Path) -> None:
    named = [d for d in measure.populations.model_dump().values() if d] + measure.evidence
    absent = [d for d in named if not library.has_definition(d)]
    if absent:
        raise MeasureError(f"{spec_file}: definitions {absent} are not defined in {measure.library} "
                           f"(it defines {sorted(library.definitions)})")


def _read_value_sets(folder: Path) -> list[dict[str, Any]]:
    value_sets: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise MeasureError(f"value set file {path} is not JSON ({exc})") from exc
        if resource.get("resourceType") != "ValueSet" or not resource.get("url") \
                or not (resource.get("expansion") or {}).get("contains"):
            raise MeasureError(f"value set file {path} must be a FHIR ValueSet with a url and expansion.contains")
        value_sets.append(resource)
    return value_sets


# --- measurement period -------------------------------------------------------------------------------------


def measurement_period(text: str) -> MeasurementPeriod:
    """Parse "2026" (the calendar year) or "2026-01-01/2026-12-31" (inclusive dates) into a UTC period."""
    value = (text or "").strip()
    hint = 'use a year ("2026") or inclusive start/end dates ("2026-01-01/2026-12-31")'
    try:
        if re.fullmatch(r"\d{4}", value):
            start_day, end_day = date(int(value), 1, 1), date(int(value), 12, 31)
        elif re.fullmatch(r"\d{4}-\d{2}-\d{2}/\d{4}-\d{2}-\d{2}", value):
            first, last = value.split("/")
            start_day, end_day = date.fromisoformat(first), date.fromisoformat(last)
        else:
            raise MeasureError(f"measurement period {text!r} does not parse: {hint}")
    except ValueError as exc:
        if isinstance(exc, MeasureError):
            raise
        raise MeasureError(f"measurement period {text!r} does not parse ({exc}): {hint}") from exc
    if end_day < start_day:
        raise MeasureError(f"measurement period {text!r} ends before it starts: {hint}")
    return MeasurementPeriod(start=datetime.combine(start_day, time.min),
                             end=datetime.combine(end_day, time.max).replace(microsecond=999000))


# --- resources for the engine -------------------------------------------------------------------------------


def engine_resources(resources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``resources`` with every FHIR date/dateTime (but birthDate) as a UTC dateTime without offset.

    The engine's in-memory runtime returns null when it compares a date with a dateTime and ignores offsets,
    so "2026-12-31" becomes "2026-12-31T00:00:00" and "2026-12-31T20:00:00-05:00" becomes
    "2027-01-01T01:00:00". Nothing else changes.
    """
    return [_normalized(dict(resource), "") for resource in resources]


def _normalized(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _normalized(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v, key) for v in value]
    if isinstance(value, str) and key not in _KEEP_AS_DATE:
        if _DATE_ONLY.fullmatch(value):
            return f"{value}T00:00:00"
        if _DATE_TIME.fullmatch(value):
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(UTC).replace(tzinfo=None)
            return moment.isoformat()
    return value


# --- in-memory evaluation -----------------------------------------------------------------------------------


def evaluate_member(measure: MeasureDefinition, resources: Sequence[Mapping[str, Any]], member_id: str,
                    period: MeasurementPeriod) -> MemberResult:
    """Evaluate one member (their FHIR R4 resources, Patient included) with the engine's in-memory runtime."""
    patients = [r for r in resources if r.get("resourceType") == "Patient" and r.get("id") == member_id]
    if not patients:
        raise MeasureError(f"no Patient/{member_id} among the member's resources: pass the Patient resource "
                           "with the member's clinical resources")
    ordered = patients + [r for r in resources if r is not patients[0]]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in engine_resources(ordered)]}
    data_source = BundleDataSource(bundle)
    context = RuntimeContext.default()
    context.data_source = data_source
    context.subject = data_source.subject
    context.terminology = measure._terminology
    toolkit = InvocationToolkit()
    toolkit.register(measure.engine_library)
    parameters = {"Measurement Period": period.interval()}

    def run(definition: str) -> Any:
        try:
            return toolkit.invoke(library_identifier=measure.engine_library.identifier, definition=definition,
                                  parameters=parameters, context=context)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MeasureError(f"measure {measure.id}: the engine failed on definition {definition!r} for member "
                               f"{member_id}: {exc}") from exc

    return _result(measure, member_id, period, run, engine="memory")


# --- PostgreSQL evaluation ----------------------------------------------------------------------------------


@contextmanager
def _connection(database_url: str) -> Iterator[Any]:
    conn = connect(database_url)
    try:
        cursor = conn.cursor()
        cursor.execute("SET TIME ZONE 'UTC'")
        cursor.close()
        conn.commit()
        yield conn
    finally:
        conn.close()


def _checked_schema(schema: str) -> str:
    if not _SCHEMA_NAME.fullmatch(schema) or schema in {"public", "pg_catalog", "information_schema"}:
        raise MeasureError(f"schema {schema!r} is not a dedicated lower-case schema name (e.g. careloom_measures)")
    return schema


def load_members_postgres(measures: Sequence[MeasureDefinition], members: Mapping[str, Sequence[Mapping[str, Any]]],
                          *, database_url: str, schema: str) -> int:
    """Create the engine's FHIR JSONB and terminology tables in ``schema``, load the measures' value sets and
    replace each member's resources. Returns how many resources were stored."""
    with _connection(database_url) as conn:
        store = PostgresFHIRStore(connection=conn, schema=_checked_schema(schema))
        store.initialize()
        for measure in measures:
            for value_set in measure.value_sets:
                store.upsert_value_set(value_set)
        stored = 0
        for member_id, resources in members.items():
            stored += store.replace_patient_bundle(
                member_id, {"resourceType": "Bundle", "entry": [{"resource": r} for r in engine_resources(resources)]})
        return stored


def evaluate_population_postgres(measure: MeasureDefinition, member_ids: Sequence[str], period: MeasurementPeriod,
                                 *, database_url: str, schema: str) -> list[MemberResult]:
    """Evaluate members already loaded by :func:`load_members_postgres`: each population definition is compiled
    by the engine to SQL over FHIR JSONB and run per member. Same results as :func:`evaluate_member`."""
    with _connection(database_url) as conn:
        executor = PostgresExecutor(connection=conn, schema=_checked_schema(schema))
        results = []
        for member_id in member_ids:
            def run(definition: str, member: str = member_id) -> Any:
                return executor.execute(measure.engine_library, definition=definition, patient_id=member,
                                        parameters={"Measurement Period": period.interval()})
            results.append(_result(measure, member_id, period, run, engine="postgres"))
        conn.rollback()
        return results


def drop_postgres_schema(*, database_url: str, schema: str) -> None:
    """Drop a schema :func:`load_members_postgres` created, with its tables."""
    with _connection(database_url) as conn:
        cursor = conn.cursor()
        cursor.execute(f'DROP SCHEMA IF EXISTS "{_checked_schema(schema)}" CASCADE')
        conn.commit()


# --- scoring ------------------------------------------------------------------------------------------------


def _result(measure: MeasureDefinition, member_id: str, period: MeasurementPeriod, run: Any,
            *, engine: Literal["memory", "postgres"]) -> MemberResult:
    names = measure.populations
    initial = run(names.initial_population) is True
    denominator = initial and run(names.denominator) is True
    excluded = denominator and names.denominator_exclusion is not None and run(names.denominator_exclusion) is True
    numerator = denominator and not excluded and run(names.numerator) is True
    counted = denominator and not excluded
    gap_open = counted and (numerator if measure.numerator_means == "gap_open" else not numerator)
    evidence: list[str] = []
    if initial:
        for definition in measure.evidence:
            for ref in _references(run(definition)):
                if ref not in evidence:
                    evidence.append(ref)
    return MemberResult(measure_id=measure.id, member_id=member_id, period_start=period.start,
                        period_end=period.end, initial_population=initial, denominator=denominator,
                        denominator_exclusion=excluded, numerator=numerator, gap_open=gap_open,
                        evidence=evidence, engine=engine)


def _references(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [f"{item['resourceType']}/{item['id']}" for item in items
            if isinstance(item, dict) and item.get("resourceType") and item.get("id")]


