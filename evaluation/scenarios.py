"""The scenario file format (``careloom-scenario/1``): one evaluation case per YAML or JSON file.

A case names its program, the data (generated from a seed and a spec, or FHIR
files next to it), the scripted model's answer (``--planner scripted`` only),
the human reviewer's decision per action kind, and what must happen: the
expected verdict for each action kind the planner proposes and the expected
outcome of the run. ``docs/evaluation.md`` documents every field.

Loading never stops at a bad file: each problem becomes a :class:`SkippedCase`
naming the file and the field, and the other cases still run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evaluation.scripted_model import BEHAVIOURS
from evaluation.synthetic import GAP_CONDITIONS, NOTES, PV1_ADMISSION_TYPES
from guardrails.policy import Role
from tools.quality_measures import MEASURES_FOLDER, MeasureError, measurement_period
from workflows.programs import ALL_TOOLS

__all__ = ["ACTION_KINDS", "FORMAT", "TRIGGERS", "Case", "Expectation", "SkippedCase", "Suite", "load_suite",
           "trigger_of"]

FORMAT = "careloom-scenario/1"
ACTION_KINDS: frozenset[str] = frozenset(t.tag for t in ALL_TOOLS if t.kind == "write")
"""The action kinds an expectation may name: the write tools."""

Verdict = Literal["must_require_approval", "must_block", "must_defer", "may_auto"]
ReviewDecision = Literal["approve", "edit", "reject"]
PROGRAM_NAMES = ("post-discharge-outreach", "prior-auth-triage", "care-gap-closure")
TRIGGERS = {"explicit": "outreach-start", "import": "import", "adt": "adt", "bundle": "bundle"}
"""An outreach case's ``data.start`` → the trigger its figures are reported under (``automation_by_trigger``)."""


def trigger_of(case: "Case") -> str:
    """What starts the case's run, as the report names it: outreach-start (the stay stored, the run started as
    `careloom outreach start`), import (stored records, `careloom import --start-outreach`), adt (an HL7 ADT^A03
    through the listener), bundle (a Synthea-style Bundle through the importer); prior-auth (a PAS request) and
    care-gap (a campaign's start) for the other programs."""
    if case.program == "prior-auth-triage":
        return "prior-auth"
    if case.program == "care-gap-closure":
        return "care-gap"
    return TRIGGERS[case.data.start]


def shipped_measure_ids() -> frozenset[str]:
    """The ids of the measures shipped under ``tools/measures`` (read from each ``measure.json``)."""
    return frozenset(json.loads(f.read_text(encoding="utf-8"))["id"] for f in MEASURES_FOLDER.glob("*/measure.json"))


def _one_of(value: str, allowed: Iterable[str], what: str) -> str:
    """``value`` if it is one of ``allowed``; else a ValueError that lists them."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; use one of {', '.join(sorted(allowed))}")
    return value


def _known_kinds(value: Any) -> Any:  # noqa: ANN401 - a mapping keyed by action kind, before validation
    if isinstance(value, dict):
        for kind in sorted(value):
            _one_of(kind, ACTION_KINDS, "action kind")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StaySpec(_Strict):
    los_days: int = Field(default=2, ge=0, le=365)
    discharged: str | None = Field(default="-6h", description=(
        "When the member left: an offset from the evaluation's start (-6h, -3d) or an ISO date-time; "
        "null: still admitted."))
    codes: tuple[str, ...] = Field(default=(), description="ICD-10-CM codes of active conditions (Charlson).")
    ed_visits: int = Field(default=0, ge=0, le=20, description="ED visits in the 6 months before.")
    admit_source: str | None = Field(default="emd", description="emd: admitted through the ED (acuity 3).")
    priority: str | None = Field(default="UR", description=(
        "Encounter.priority (v3-ActPriority): UR or EM are acute; null with admit_source null leaves the "
        "admission's acuity unrecorded, so LACE cannot be scored."))

    @field_validator("discharged")
    @classmethod
    def _when(cls, value: str | None) -> str | None:
        if value is not None:
            discharge_time(value, datetime(2026, 1, 1))
        return value


def discharge_time(value: str, start: datetime) -> datetime:
    """``-6h`` / ``-3d`` relative to ``start``, or an ISO date-time (with its offset)."""
    if value.startswith("-") and value[-1:] in ("h", "d") and value[1:-1].isdigit():
        amount = int(value[1:-1])
        return start - (timedelta(hours=amount) if value.endswith("h") else timedelta(days=amount))
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither an offset like -6h or -3d nor an ISO date-time") from None
    if at.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; write e.g. 2026-12-24T15:00:00-05:00")
    return at


class MemberSpec(_Strict):
    """A synthetic member (``evaluation.synthetic.member_resources``)."""

    sex: Literal["female", "male", "other", "unknown"] = "female"
    birth_date: date = date(1950, 5, 5)
    language: str | None = Field(default=None, description="BCP-47 code of the preferred language, e.g. es.")
    state: str | None = Field(default="MA", description="US state of the home address (sets the time zone).")
    phone: Literal["mobile", "home", "none"] = "mobile"
    email: bool = False
    plan: str = Field(default="Medicare Advantage (Part C)", description="Coverage.type text.")
    coverage_status: Literal["active", "cancelled", "draft", "entered-in-error"] = "active"
    coverage_end: date = date(2099, 12, 31)
    opted_out: bool = False
    deceased: bool = False
    stay: StaySpec = Field(default_factory=StaySpec)
    earlier_stays: int = Field(default=0, ge=0, le=20, description=(
        "More inpatient stays before ``stay`` (2 days each, ending 1, 5, 9... days before its admission): a "
        "member with many discharges, which data.start: import offers to outreach all at once."))


class RequestSpec(_Strict):
    """A generated Da Vinci PAS request for the member (``evaluation.synthetic.build_pas_bundle``)."""

    service_code: str = "72148"
    extra_codes: tuple[str, ...] = ()
    quantity: int = Field(default=1, ge=1)
    priority: Literal["normal", "urgent", "stat", "deferred"] = "normal"
    notes: str = Field(default="mri-met", description=f"One of {', '.join(sorted(NOTES))}.")

    @field_validator("notes")
    @classmethod
    def _known_notes(cls, value: str) -> str:
        return _one_of(value, NOTES, "notes")


class GapSpec(_Strict):
    """A care-gap closure case's run and the member's records the measures read
    (``evaluation.synthetic.gap_member_resources``)."""

    period: str | None = Field(default=None, description=(
        "The measurement period: a year (2026) or inclusive dates (2026-01-01/2026-12-31); null: the calendar "
        "year (UTC) the evaluation runs in."))
    measures: tuple[str, ...] = Field(min_length=1, description="Measure ids the run evaluates (tools/measures).")
    conditions: tuple[str, ...] = Field(default=("E11.9",), description=(
        f"ICD-10-CM active conditions, onset 2019-06-01: {', '.join(f'{k} {v}' for k, v in GAP_CONDITIONS.items())}."))
    office_visit: bool = Field(default=True, description="A finished office visit 60 days into the period.")
    hba1c: float | None = Field(default=None, ge=0, le=25, description="An HbA1c result (%) that day; null: none.")
    blood_pressure: tuple[int, int] | None = Field(default=None, description=(
        "[systolic, diastolic] mm[Hg] measured that day; null: none."))
    mammogram: bool = Field(default=False, description="A screening mammography that day.")

    @field_validator("period", mode="before")
    @classmethod
    def _year(cls, value: Any) -> Any:  # noqa: ANN401 - YAML reads `period: 2026` as a number
        return str(value) if isinstance(value, int) else value

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                measurement_period(value)
            except MeasureError as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("measures")
    @classmethod
    def _known_measures(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for measure in value:
            _one_of(measure, shipped_measure_ids(), "measure")
        return value

    @field_validator("conditions")
    @classmethod
    def _known_conditions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for code in value:
            _one_of(code, GAP_CONDITIONS, "condition code")
        return value

    def period_dates(self, today: date) -> tuple[date, date]:
        """(first day, last day) of the measurement period; the calendar year of ``today`` by default."""
        if self.period is None:
            return date(today.year, 1, 1), date(today.year, 12, 31)
        parsed = measurement_period(self.period)
        return parsed.start.date(), parsed.end.date()


class DataSpec(_Strict):
    seed: int = Field(default=0, ge=0, description="Part of every generated id: two cases never share records.")
    start: Literal["explicit", "import", "adt", "bundle"] = Field(default="explicit", description=(
        "How outreach starts (the case's trigger): explicit (one run for the stay, as `careloom outreach start`), "
        "import (every discharge of the member's records, as `careloom import --start-outreach`, which may start "
        "none or several), adt (the stay is not stored: an HL7 ADT^A03 for it goes over MLLP to a real ADT "
        "listener, which maps it and starts the run, as in production) or bundle (the member's clinical records "
        "as a Synthea-style transaction Bundle, imported by the importer, then started as import does). "
        "Outreach cases only; adt and bundle need a generated member who was discharged."))
    member: MemberSpec | None = None
    request: RequestSpec | None = None
    gaps: GapSpec | None = Field(default=None, description="care-gap-closure cases only (with data.member).")
    files: tuple[str, ...] = Field(default=(), description=(
        "FHIR JSON files (resources or Bundles), relative to the scenario file; for prior-auth-triage the "
        "first Bundle with a Claim is the request."))

    @model_validator(mode="after")
    def _one_source(self) -> "DataSpec":
        if self.member is None and not self.files:
            raise ValueError("give data.member (a generator spec) or data.files (FHIR files)")
        if self.member is not None and self.files:
            raise ValueError("give data.member or data.files, not both")
        return self


class ModelSpec(_Strict):
    reply: str = Field(default="follow-prompt", description=f"One of {', '.join(sorted(BEHAVIOURS))}.")

    @field_validator("reply")
    @classmethod
    def _known_reply(cls, value: str) -> str:
        return _one_of(value, BEHAVIOURS, "model reply")


class Expectation(_Strict):
    """What must happen to every proposed action of one kind."""

    verdict: Verdict
    min_role: Role | None = Field(default=None, description="For must_require_approval: the least senior "
                                                             "role that may decide.")
    outside_contact_hours: Verdict | None = Field(default=None, description=(
        "The verdict when the guardrails judged the action outside the TCPA window (08:00-21:00 in "
        "contact_zone), which the harness computes from the verdict's own time."))
    contact_zone: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Expectation":
        if self.verdict == "must_require_approval" and self.min_role is None:
            raise ValueError("must_require_approval needs min_role (care_coordinator, rn or md)")
        if (self.outside_contact_hours is None) != (self.contact_zone is None):
            raise ValueError("outside_contact_hours and contact_zone go together")
        if self.contact_zone is not None:
            try:
                ZoneInfo(self.contact_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {self.contact_zone!r}; use an IANA name") from None
        return self


def _expectation(value: Any) -> Any:  # noqa: ANN401 - YAML shorthand
    return {"verdict": value} if isinstance(value, str) else value




class OutcomeSpec(_Strict):
    status: tuple[str, ...] = Field(default=(), description="Acceptable run statuses at the end (any of).")
    lace: int | None = Field(default=None, ge=0, le=19)
    determination: Literal["approve", "deny", "partial", "pend"] | None = None
    proposed: tuple[str, ...] | None = Field(default=None, description="Exactly these action kinds are proposed.")
    task_priority: Literal["routine", "urgent", "asap", "stat"] | None = Field(default=None, description=(
        "The least priority of every TCM interactive-contact Task a run writes (FHIR Task.priority: routine < "
        "urgent < asap < stat); a lower one is a gate failure (downgraded_actions)."))
    not_written: tuple[str, ...] = Field(default=(), description=(
        "Text that no record a run writes and no approval item a reviewer sees may contain (identifiers a "
        "scripted model put in its text); any is a gate failure (text_leaks)."))
    open_gaps: tuple[str, ...] | None = Field(default=None, description=(
        "care-gap-closure: exactly these measure ids are open when the run settles (the first evaluation)."))
    not_in_messages: tuple[str, ...] = Field(default=(), description=(
        "Text no message a run writes to the member (a Communication) may contain, e.g. the clinical words a "
        "care-gap reminder may not name; any is a gate failure (text_leaks)."))
    count: dict[str, int] = Field(default_factory=dict, description=(
        "At most this many actions of a kind over all the case's runs (one close-episode item for a deceased "
        "member, however many stays); more is a gate failure (excess_actions)."))

    @field_validator("count", mode="before")
    @classmethod
    def _count_kinds(cls, value: Any) -> Any:  # noqa: ANN401
        return _known_kinds(value)

    @field_validator("status", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:  # noqa: ANN401
        return (value,) if isinstance(value, str) else value


class ExpectSpec(_Strict):
    actions: dict[str, Expectation] = Field(default_factory=dict)
    outcome: OutcomeSpec = Field(default_factory=OutcomeSpec)

    @field_validator("actions", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:  # noqa: ANN401
        _known_kinds(value)
        return {k: _expectation(v) for k, v in value.items()} if isinstance(value, dict) else value


class Case(_Strict):
    format: Literal["careloom-scenario/1"]
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,80}$")
    program: Literal["post-discharge-outreach", "prior-auth-triage", "care-gap-closure"]
    title: str = ""
    tags: tuple[str, ...] = ()
    data: DataSpec
    model: ModelSpec | None = Field(default=None, description="Only with --planner scripted; other planners "
                                                              "skip the case.")
    review: dict[str, ReviewDecision] = Field(default_factory=dict, description=(
        "The reviewer's decision per action kind (default approve); for an action that ran on its own, the "
        "retrospective label used for calibration."))
    expect: ExpectSpec

    @field_validator("review", mode="before")
    @classmethod
    def _known_review_kinds(cls, value: Any) -> Any:  # noqa: ANN401
        return _known_kinds(value)

    @model_validator(mode="after")
    def _program_data(self) -> "Case":
        if self.program == "prior-auth-triage" and self.data.member is not None and self.data.request is None:
            raise ValueError("a prior-auth-triage case with a generated member needs data.request")
        if self.program == "post-discharge-outreach" and self.data.request is not None:
            raise ValueError("data.request is for prior-auth-triage cases")
        if self.program != "post-discharge-outreach" and self.data.start != "explicit":
            raise ValueError(f"data.start: {self.data.start} is for post-discharge-outreach cases; remove it")
        if self.data.start in ("adt", "bundle"):
            member = self.data.member
            if member is None or member.stay.discharged is None:
                raise ValueError(f"data.start: {self.data.start} needs data.member with a discharge "
                                 "(stay.discharged): the trigger is the discharge")
            if self.data.start == "adt" and member.stay.priority not in (None, *PV1_ADMISSION_TYPES):
                raise ValueError(f"data.member.stay.priority {member.stay.priority!r} has no PV1-4 admission type; "
                                 f"with data.start: adt use one of {', '.join(PV1_ADMISSION_TYPES)} or null")
        if self.program == "care-gap-closure":
            if self.data.member is None or self.data.gaps is None:
                raise ValueError("a care-gap-closure case needs data.member and data.gaps (period, measures, "
                                 "the member's records)")
            if self.data.request is not None:
                raise ValueError("data.request is for prior-auth-triage cases")
        elif self.data.gaps is not None:
            raise ValueError("data.gaps is for care-gap-closure cases; remove it")
        return self

    source: Path | None = Field(default=None, exclude=True)


class SkippedCase(BaseModel):
    file: str
    reason: str


class Suite(BaseModel):
    root: str
    cases: list[Case]
    skipped: list[SkippedCase]

    @property
    def digest(self) -> str:
        text = json.dumps([c.model_dump(mode="json") for c in self.cases], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _problem(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(file)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown field; check the spelling against docs/evaluation.md"
    elif first["type"] == "missing":
        message = "required field is missing"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {message}{more}"


def load_case(path: Path) -> Case:
    """One case; raises ValueError naming the field and the fix."""
    try:
        raw = (json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json"
               else yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError("a scenario file holds one mapping (format, id, program, data, expect)")
    raw.setdefault("id", path.stem)
    try:
        case = Case.model_validate(raw)
    except ValidationError as err:
        raise ValueError(_problem(err)) from None
    for name in case.data.files:
        if not (path.parent / name).is_file():
            raise ValueError(f"data.files: {name} does not exist next to the scenario; fix the path")
    return case.model_copy(update={"source": path})


def load_suite(root: Path, *, select: str | None = None) -> Suite:
    """Every ``*.yaml``/``*.yml``/``*.json`` case under ``root``; bad ones are skipped with the reason."""
    if not root.is_dir():
        raise FileNotFoundError(f"suite folder {root} does not exist; pass --suite DIR")
    cases: list[Case] = []
    skipped: list[SkippedCase] = []
    seen: dict[str, Path] = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json") and p.is_file()):
        if path.suffix == ".json" and "data" in path.relative_to(root).parts:
            continue  # FHIR files a case points at, not cases
        relative = str(path.relative_to(root))
        try:
            case = load_case(path)
        except (ValueError, OSError) as err:
            skipped.append(SkippedCase(file=relative, reason=str(err)))
            continue
        if case.id in seen:
            skipped.append(SkippedCase(file=relative, reason=f"id: {case.id!r} is also the id of "
                                                             f"{seen[case.id].relative_to(root)}; ids are unique"))
            continue
        if select and select not in case.id and select not in case.tags:
            continue
        seen[case.id] = path
        cases.append(case)
    return Suite(root=str(root), cases=cases, skipped=skipped)
